// The editor's three schedule modes and the cron expression each one becomes (docs/dashboard.md).
// Pure functions: no DOM, so they are easy to reason about (and to test from the browser).
//
//   times     ["12:00","18:00","20:00"]      -> "0 12,18,20 * * *"
//             ["08:00","08:30","17:00","17:30"] -> "0,30 8,17 * * *"  (exactly hours x minutes)
//             ["08:00","17:30"]               -> error "timesMinutes"
//   interval  5 minutes -> "*/5 * * * *"    7 minutes -> "@every 7m"
//             2 hours   -> "0 */2 * * *"    5 hours   -> "@every 5h"
//   cron      taken as written

export const MODES = ["times", "interval", "cron"];

/** "9:05" / "09:05" / "09:05:00" -> [9, 5]; null when not a time of day. */
export function parseTime(text) {
  const match = /^\s*(\d{1,2}):(\d{2})(?::\d{2}(?:\.\d+)?)?\s*$/.exec(String(text ?? ""));
  if (!match) return null;
  const hour = Number(match[1]);
  const minute = Number(match[2]);
  if (hour > 23 || minute > 59) return null;
  return [hour, minute];
}

export function formatTime(hour, minute) {
  return `${String(hour).padStart(2, "0")}:${String(minute).padStart(2, "0")}`;
}

const byNumber = (a, b) => a - b;

/**
 * @param {string[]} times
 * @returns {{cron: string} | {error: "timesEmpty"|"timeInvalid"|"timesMinutes"}}
 */
export function timesToCron(times) {
  const filled = times.filter((time) => String(time ?? "").trim() !== "");
  if (filled.length === 0) return { error: "timesEmpty" };
  const pairs = new Set();
  const hours = new Set();
  const minutes = new Set();
  for (const time of filled) {
    const parsed = parseTime(time);
    if (!parsed) return { error: "timeInvalid" };
    const [hour, minute] = parsed;
    pairs.add(hour * 60 + minute);
    hours.add(hour);
    minutes.add(minute);
  }
  // Same minute everywhere is the common case (minutes.size === 1); otherwise the set of
  // times must be every hour combined with every minute, which one cron expression can say.
  if (pairs.size !== hours.size * minutes.size) return { error: "timesMinutes" };
  const minuteField = Array.from(minutes).sort(byNumber).join(",");
  const hourField = Array.from(hours).sort(byNumber).join(",");
  return { cron: `${minuteField} ${hourField} * * *` };
}

/**
 * @param {number|string} value a whole number > 0
 * @param {"minutes"|"hours"} unit
 * @returns {{cron: string} | {error: "interval"}}
 */
export function intervalToCron(value, unit) {
  const text = String(value ?? "").trim();
  if (!/^\d+$/.test(text)) return { error: "interval" };
  let count = Number(text);
  let inHours = unit === "hours";
  if (count < 1) return { error: "interval" };
  if (!inHours && count % 60 === 0) {
    // 60, 120 … minutes are whole hours
    count /= 60;
    inHours = true;
  }
  if (inHours) {
    if (count < 24 && 24 % count === 0) return { cron: `0 */${count} * * *` };
    return { cron: `@every ${count}h` };
  }
  if (60 % count === 0) return { cron: `*/${count} * * * *` };
  return { cron: `@every ${count}m` };
}

/**
 * @param {{mode: string, times: string[], intervalValue: string|number, intervalUnit: string, cron: string}} form
 * @returns {{cron: string} | {error: string}}
 */
export function formToCron(form) {
  switch (form.mode) {
    case "times":
      return timesToCron(form.times);
    case "interval":
      return intervalToCron(form.intervalValue, form.intervalUnit);
    default: {
      const cron = String(form.cron ?? "").trim();
      return cron ? { cron } : { error: "required" };
    }
  }
}

/**
 * The editor's state from a job of the API (its `scheduleForm`), falling back to cron mode with
 * `spec.schedule` when the API sent no form.
 */
export function formFromJob(job) {
  const form = {
    mode: "times",
    times: ["12:00"],
    intervalValue: 5,
    intervalUnit: "minutes",
    cron: job?.spec?.schedule ?? "",
  };
  const source = job?.scheduleForm;
  if (!job) return form;
  if (source?.mode === "times" && Array.isArray(source.times) && source.times.length) {
    form.mode = "times";
    form.times = source.times.map((time) => {
      const parsed = parseTime(time);
      return parsed ? formatTime(...parsed) : String(time);
    });
  } else if (source?.mode === "interval" && Number(source.intervalMinutes) > 0) {
    const minutes = Number(source.intervalMinutes);
    form.mode = "interval";
    if (minutes % 60 === 0) {
      form.intervalValue = minutes / 60;
      form.intervalUnit = "hours";
    } else {
      form.intervalValue = minutes;
      form.intervalUnit = "minutes";
    }
  } else {
    form.mode = "cron";
  }
  return form;
}
