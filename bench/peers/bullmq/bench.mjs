// BullMQ side of Sundial's side-by-side benchmark, driven by bench/peers/bullmq_side.py.
//
//   node bench.mjs fill     --redis URL --queue Q --jobs K
//   node bench.mjs drain    --redis URL --queue Q --concurrency C --out FILE
//   node bench.mjs schedule --redis URL --queue Q --schedules N
//   node bench.mjs work     --redis URL --queue Q --concurrency C --out FILE
//
// `drain` and `work` touch FILE.ready once the worker is connected and run until SIGTERM.
// `drain` writes {"completions": [ms, ...]} (the time each job was marked completed in Redis);
// `work` writes {"starts": [[scheduler, slot_ms, start_ms], ...]}: the slot is the scheduler's
// nextMillis that BullMQ puts in the job id (`repeat:<scheduler>:<nextMillis>`, also
// `job.opts.prevMillis`), the start is when the processor function is entered.
import { writeFileSync } from 'node:fs';
import { Queue, Worker } from 'bullmq';

function options(argv) {
  const parsed = {};
  for (let i = 0; i < argv.length; i += 2) {
    parsed[argv[i].replace(/^--/, '')] = argv[i + 1];
  }
  return parsed;
}

function connection(url) {
  const parsed = new URL(url);
  return { host: parsed.hostname, port: Number(parsed.port), maxRetriesPerRequest: null };
}

// Installed first: a SIGTERM that comes early must still end in a written FILE.
const stopped = new Promise((resolve) => process.once('SIGTERM', resolve));

async function fill(opts) {
  const queue = new Queue(opts.queue, { connection: connection(opts.redis) });
  const total = Number(opts.jobs);
  for (let start = 0; start < total; start += 1000) {
    const batch = [];
    for (let i = start; i < Math.min(total, start + 1000); i++) batch.push({ name: 'noop', data: {} });
    await queue.addBulk(batch);
  }
  await queue.close();
}

async function schedule(opts) {
  const queue = new Queue(opts.queue, { connection: connection(opts.redis) });
  const total = Number(opts.schedules);
  // A 6-field cron puts every slot on a whole second, as Sundial's and arq's are
  // (`every: 1000` would start each scheduler at its own phase and spread the load).
  for (let start = 0; start < total; start += 200) {
    const batch = [];
    for (let i = start; i < Math.min(total, start + 200); i++) {
      batch.push(queue.upsertJobScheduler(`s${i}`, { pattern: '* * * * * *' }, { name: 'tick', data: {} }));
    }
    await Promise.all(batch);
  }
  await queue.close();
}

async function runWorker(opts, processor, onCompleted) {
  const worker = new Worker(opts.queue, processor, {
    connection: connection(opts.redis), concurrency: Number(opts.concurrency),
  });
  if (onCompleted) worker.on('completed', onCompleted);
  worker.on('error', (err) => console.error(`worker error: ${err.message}`));
  await worker.waitUntilReady();
  writeFileSync(`${opts.out}.ready`, '');
  await stopped;
  await worker.close();
}

async function drain(opts) {
  const completions = [];
  await runWorker(opts, async () => {}, () => completions.push(Date.now()));
  writeFileSync(opts.out, JSON.stringify({ completions }));
}

async function work(opts) {
  const starts = [];
  await runWorker(opts, async (job) => {
    const start = Date.now();
    const slot = Number(job.id.slice(job.id.lastIndexOf(':') + 1));
    starts.push([job.repeatJobKey, slot, start]);
  });
  writeFileSync(opts.out, JSON.stringify({ starts }));
}

const modes = { fill, drain, schedule, work };
const [mode, ...rest] = process.argv.slice(2);
if (!modes[mode]) {
  console.error(`usage: node bench.mjs ${Object.keys(modes).join('|')} --redis URL --queue Q ...`);
  process.exit(2);
}
await modes[mode](options(rest));
