// Every user-facing string of the page, in pt-BR (the default) and English, plus the
// formatters that depend on the language (dates in a job's time zone, durations).

export const LANGS = ["pt-BR", "en"];
export const DEFAULT_LANG = "pt-BR";
const STORAGE_KEY = "sundial.lang";

const DICT = {
  "pt-BR": {
    "app.title": "Agendamentos · Sundial",
    "app.skip": "Pular para o conteúdo",
    "app.sections": "Seções",
    "tabs.jobs": "Agendamentos",
    "tabs.queue": "Fila",
    "lang.label": "Idioma",
    "user.readOnly": "somente leitura",
    "user.readOnlyHint": "Este painel está em modo somente leitura: nada pode ser alterado aqui.",
    "user.signedInAs": "Conectado como {user}",
    "user.signOut": "Sair",
    "conn.offline": "Sem conexão com o servidor; tentando de novo…",
    "conn.backend": "Serviço indisponível: {message}",
    "conn.updated": "Atualizado às {time}",

    "jobs.title": "Agendamentos",
    "jobs.new": "Novo job",
    "jobs.filters": "Categorias",
    "jobs.filterAll": "Todos",
    "jobs.loading": "Carregando jobs…",
    "jobs.empty": "Nenhum job ainda.",
    "jobs.emptyHint": "Crie o primeiro com “+ Novo job” ou aplique um ScheduledJob com kubectl.",
    "jobs.emptyFiltered": "Nenhum job nas categorias selecionadas.",
    "jobs.count": "{shown} de {total} jobs",

    "job.enabled": "Ativado",
    "job.disabled": "Desativado",
    "job.suspendReason": "Pausado",
    "job.target": "Alvo",
    "job.namespace": "Namespace",
    "job.schedule": "Agendamento",
    "job.next": "Próxima",
    "job.last": "Última",
    "job.noNext": "—",
    "job.neverRan": "Nunca executou",
    "job.running": "Executando agora",
    "job.problem": "Problema",
    "job.edit": "Editar",
    "job.editLabel": "Editar {name}",
    "job.history": "Histórico",
    "job.historyLabel": "Histórico de {name}",
    "job.runNow": "Executar agora",
    "job.runNowLabel": "Executar agora: {name}",
    "job.counts": "{success} sucesso(s) · {failed} falha(s)",

    "toast.dismiss": "Fechar aviso",
    "toast.runRequested": "Execução de “{name}” solicitada.",
    "job.backfill": "Passados",
    "job.backfillLabel": "Executar horários passados: {name}",
    "backfill.title": "Executar horários passados",
    "backfill.intro": "Executa agora os horários do job entre as duas datas (inclusive), uma vez cada: horários que já executaram não executam de novo.",
    "backfill.from": "De",
    "backfill.to": "Até",
    "backfill.zone": "Datas no fuso horário deste navegador ({zone}); os horários abaixo, no fuso do job ({jobZone}).",
    "backfill.sequential": "Um de cada vez",
    "backfill.sequentialHint": "O próximo horário só começa quando o anterior terminar, com as novas tentativas. Sempre assim quando a sobreposição não é “Executar junto”.",
    "backfill.slots": "Horários que vão executar",
    "backfill.slotsNone": "Nenhum horário do job nesse intervalo.",
    "backfill.slotsCount": "{count} horário(s) no intervalo.",
    "backfill.slotsMore": "{count} horários no intervalo; os primeiros {shown}:",
    "backfill.slotsAsk": "Escolha as duas datas para ver os horários.",
    "backfill.slotsRefused": "Nenhum horário enquanto o intervalo não for válido: veja o aviso acima.",
    "backfill.required": "Informe uma data e hora.",
    "backfill.submit": "Executar",
    "toast.backfillRequested": "{count} horário(s) de “{name}” solicitados.",
    "toast.enabled": "“{name}” ativado.",
    "toast.disabled": "“{name}” desativado.",
    "toast.created": "Job “{name}” criado.",
    "toast.saved": "Job “{name}” salvo.",
    "toast.deleted": "Job “{name}” excluído.",
    "toast.retryRequested": "Nova execução de “{name}” solicitada.",
    "toast.forbidden": "Sem permissão: {message}",
    "toast.error": "Erro: {message}",
    "toast.network": "Sem conexão com o servidor.",

    "status.success": "Sucesso",
    "status.succeeded": "Sucesso",
    "status.failed": "Falhou",
    "status.timed_out": "Tempo esgotado",
    "status.running": "Executando",
    "status.cancelled": "Cancelado",
    "status.skipped": "Pulado",
    "status.queued": "Na fila",
    "status.pending": "Na fila",
    "status.retrying": "Aguardando nova tentativa",
    "status.missed": "Perdido",

    "trigger.scheduled": "Agendado",
    "trigger.manual": "Manual",
    "trigger.retry": "Nova tentativa",
    "trigger.catchup": "Recuperação",
    "trigger.backfill": "Preenchimento",

    "editor.titleNew": "Novo job",
    "editor.titleEdit": "Editar job",
    "editor.close": "Fechar",
    "editor.basics": "Identificação",
    "editor.name": "Nome no Kubernetes",
    "editor.nameHint": "Letras minúsculas, números e hífens. Não pode ser alterado depois.",
    "editor.namespace": "Namespace",
    "editor.displayName": "Nome de exibição",
    "editor.description": "Descrição",
    "editor.category": "Categoria",
    "editor.categoryHint": "Minúsculas, ex.: biz, system, maintenance.",
    "editor.target": "Alvo",
    "editor.targetHint": "Um alvo oferecido pelos workers, ex.: noop, http, biz:pipeline.",
    "editor.schedule": "Agendamento",
    "editor.mode": "Tipo",
    "editor.modeTimes": "Horários",
    "editor.modeInterval": "Intervalo",
    "editor.modeCron": "Cron",
    "editor.timeN": "Horário {n}",
    "editor.removeTime": "Remover horário {n}",
    "editor.addTime": "Adicionar",
    "editor.addTimeLabel": "Adicionar horário",
    "editor.every": "A cada",
    "editor.unit": "Unidade",
    "editor.minutes": "minutos",
    "editor.hours": "horas",
    "editor.cron": "Expressão cron",
    "editor.cronHint": "5 campos (minuto hora dia mês dia-da-semana), 6 com segundos, @daily, @every 5m…",
    "editor.timeZone": "Fuso horário",
    "editor.settings": "Configurações",
    "editor.timeout": "Timeout",
    "editor.timeoutUnit": "minutos",
    "editor.attempts": "Tentativas em falha",
    "editor.attemptsHint": "Total de tentativas por execução, a primeira incluída.",
    "editor.jitter": "Espalhar o início (jitter)",
    "editor.jitterUnit": "segundos",
    "editor.jitterHint": "Cada execução começa até este tanto depois do horário, com o mesmo atraso para o mesmo horário. 0: no horário.",
    "editor.schedules": "Outros horários",
    "editor.schedulesHint": "Um por linha: cron, ou cron | Fuso/Horário. Um horário repetido executa uma vez.",
    "editor.exclude": "Exceções",
    "editor.excludeHint": "Uma por linha: data (AAAA-MM-DD, o dia todo) ou cron de 5 campos. Esses horários não executam.",
    "editor.catchUp": "Janela de recuperação",
    "editor.catchUpHint": "Após uma parada, só horários desta janela seguem a política de perdidos; os mais antigos ficam perdidos.",
    "editor.dst": "Horário de verão",
    "editor.dstDefault": "Regra do cron",
    "editor.dstRunAfterGap": "Hora pulada: executar ao fim",
    "editor.dstSkip": "Hora pulada: não executar",
    "editor.dstOnce": "Hora repetida: uma vez",
    "editor.dstBoth": "Hora repetida: nas duas",
    "editor.dstHint": "Nas noites de mudança de horário. Padrão: como o cron.",
    "editor.concurrency": "Sobreposição",
    "editor.concurrencyAllow": "Executar junto (padrão)",
    "editor.concurrencyForbid": "Pular o horário",
    "editor.concurrencyReplace": "Cancelar a execução em curso",
    "editor.concurrencyBufferOne": "Esperar (no máximo um)",
    "editor.concurrencyBufferAll": "Esperar (todos, em ordem)",
    "editor.concurrencyHint": "Quando um horário chega e a execução anterior ainda não terminou.",
    "editor.dstRepeated": "Hora repetida",
    "editor.suspendReason": "Motivo da pausa",
    "editor.startTime": "Início",
    "editor.endTime": "Fim",
    "editor.windowHint": "Opcional, com fuso (ex.: 2026-04-01T00:00:00-03:00): nenhum horário fora desta janela executa.",
    "editor.maxRuns": "Limite de execuções",
    "editor.maxRunsHint": "Só os primeiros N horários a partir do início executam (um horário perdido conta). Exige início.",
    "editor.advanced": "Avançado",
    "editor.params": "Parâmetros (JSON)",
    "editor.paramsHint": "Objeto JSON entregue ao alvo.",
    "editor.cancel": "Cancelar",
    "editor.save": "Salvar",
    "editor.saving": "Salvando…",
    "editor.delete": "Excluir",
    "editor.deleteConfirm": "Confirmar exclusão",
    "editor.loading": "Carregando…",
    "editor.previewChecking": "Verificando agendamento…",
    "editor.previewNext": "Próximas execuções",
    "editor.cronResult": "Cron: {cron}",
    "editor.errTimesMinutes":
      "Os horários precisam ter os mesmos minutos (ex.: 12:30, 18:30, 20:30) ou formar uma grade horas × minutos. Para outros casos use o modo Cron.",
    "editor.errTimesEmpty": "Adicione pelo menos um horário.",
    "editor.errTimeInvalid": "Preencha todos os horários (HH:MM).",
    "editor.errInterval": "Informe um número inteiro maior que zero.",
    "editor.errRequired": "Campo obrigatório.",
    "editor.errName": "Use até 63 letras minúsculas, números e hífens, começando e terminando com letra ou número.",
    "editor.errJson": "JSON inválido: {message}",
    "editor.errJsonObject": "Os parâmetros devem ser um objeto JSON ({ … }).",
    "editor.errNumber": "Informe um número entre {min} e {max}.",
    "editor.errSummary": "Corrija os campos indicados antes de salvar.",
    "editor.conflict": "Este job foi alterado em outro lugar depois que você o abriu. Recarregue para ver a versão atual (suas alterações serão descartadas).",
    "editor.reload": "Recarregar",
    "editor.nameTaken": "Já existe um job com este nome neste namespace.",
    "editor.notFound": "Este job não existe mais.",

    "history.title": "Histórico",
    "history.subtitle": "{name}",
    "history.caption": "Execuções de {name}, mais recentes primeiro",
    "history.slot": "Previsto para",
    "history.status": "Status",
    "history.trigger": "Gatilho",
    "history.attempt": "Tentativa",
    "history.started": "Início",
    "history.duration": "Duração",
    "history.worker": "Worker",
    "history.details": "Erro / saída",
    "history.output": "Saída",
    "history.more": "Detalhes",
    "history.logs": "Logs dos pods",
    "history.logsLoading": "Carregando logs…",
    "history.logsNone": "Nenhum Job desta execução (os limites de histórico apagam os antigos).",
    "history.empty": "Nenhuma execução registrada ainda.",
    "history.loading": "Carregando…",
    "history.prev": "Anterior",
    "history.next": "Próxima",
    "history.range": "{from}–{to} de {total}",
    "history.pagination": "Páginas do histórico",
    "history.manual": "manual",
    "history.scroll": "Tabela de execuções (role para ver mais)",

    "queue.title": "Fila",
    "queue.waiting": "Na fila",
    "queue.delayed": "Retentativas agendadas",
    "queue.inFlight": "Em execução",
    "queue.workers": "Workers ativos",
    "queue.inFlightByWorker": "Em execução, por worker",
    "queue.delayedList": "Retentativas agendadas",
    "queue.failures": "Falhas recentes",
    "queue.liveWorkers": "Workers e alvos",
    "queue.pools": "Por pool de workers",
    "queue.poolSummary": "{waiting} na fila (a mais antiga há {oldest}) · {inFlight} em execução · {delayed} retentativas · {workers} workers",
    "queue.retry": "Tentar novamente",
    "queue.retryLabel": "Tentar novamente: {name}",
    "queue.noInFlight": "Nada em execução agora.",
    "queue.noDelayed": "Nenhuma retentativa agendada.",
    "queue.noFailures": "Nenhuma falha recente.",
    "queue.showAll": "Mostrar todas ({n})",
    "queue.showLess": "Mostrar menos",
    "queue.noWorkers": "Nenhum worker ativo.",
    "queue.dueAt": "às {time}",
    "queue.since": "desde {time}",
    "queue.lastSeen": "visto {time}",
    "queue.attempt": "tentativa {n}",
    "queue.targets": "Alvos",
    "queue.loading": "Carregando fila…",
    "queue.deadLetters": "Mensagens descartadas",
    "queue.deadHint": "Execuções que nenhum worker conseguiu rodar, com o motivo; não rodam de novo sozinhas.",
    "queue.noDeadLetters": "Nenhuma mensagem descartada.",
    "queue.deadHidden": "Mais {n} não listadas (mais antigas, de jobs que você não vê ou ilegíveis).",

    "auth.title": "Entrar no Sundial",
    "auth.explain": "Informe um token bearer do Kubernetes (por exemplo, a saída de “kubectl create token …”). Ele fica guardado só nesta aba.",
    "auth.token": "Token bearer do Kubernetes",
    "auth.submit": "Entrar",
    "auth.rejected": "Token recusado pelo servidor.",

    "time.today": "hoje",
    "time.tomorrow": "amanhã",
    "time.yesterday": "ontem",
  },
  en: {
    "app.title": "Schedules · Sundial",
    "app.skip": "Skip to content",
    "app.sections": "Sections",
    "tabs.jobs": "Schedules",
    "tabs.queue": "Queue",
    "lang.label": "Language",
    "user.readOnly": "read-only",
    "user.readOnlyHint": "This dashboard is read-only: nothing can be changed here.",
    "user.signedInAs": "Signed in as {user}",
    "user.signOut": "Sign out",
    "conn.offline": "Cannot reach the server; retrying…",
    "conn.backend": "Service unavailable: {message}",
    "conn.updated": "Updated at {time}",

    "jobs.title": "Schedules",
    "jobs.new": "New job",
    "jobs.filters": "Categories",
    "jobs.filterAll": "All",
    "jobs.loading": "Loading jobs…",
    "jobs.empty": "No jobs yet.",
    "jobs.emptyHint": "Create the first one with “+ New job” or apply a ScheduledJob with kubectl.",
    "jobs.emptyFiltered": "No jobs in the selected categories.",
    "jobs.count": "{shown} of {total} jobs",

    "job.enabled": "Enabled",
    "job.disabled": "Disabled",
    "job.suspendReason": "Paused",
    "job.target": "Target",
    "job.namespace": "Namespace",
    "job.schedule": "Schedule",
    "job.next": "Next",
    "job.last": "Last",
    "job.noNext": "—",
    "job.neverRan": "Never ran",
    "job.running": "Running now",
    "job.problem": "Problem",
    "job.edit": "Edit",
    "job.editLabel": "Edit {name}",
    "job.history": "History",
    "job.historyLabel": "History of {name}",
    "job.runNow": "Run now",
    "job.runNowLabel": "Run now: {name}",
    "job.counts": "{success} succeeded · {failed} failed",

    "toast.dismiss": "Dismiss",
    "toast.runRequested": "Run of “{name}” requested.",
    "job.backfill": "Backfill",
    "job.backfillLabel": "Run past slots: {name}",
    "backfill.title": "Run past slots",
    "backfill.intro": "Runs the job's slots between the two dates (inclusive) now, once each: slots that already ran do not run again.",
    "backfill.from": "From",
    "backfill.to": "To",
    "backfill.zone": "Dates in this browser's time zone ({zone}); the slots below in the job's ({jobZone}).",
    "backfill.sequential": "One at a time",
    "backfill.sequentialHint": "The next slot starts only once the one before has ended, retries included. Always so when the overlap policy is not “Run alongside”.",
    "backfill.slots": "Slots that will run",
    "backfill.slotsNone": "No slot of the job in that window.",
    "backfill.slotsCount": "{count} slot(s) in the window.",
    "backfill.slotsMore": "{count} slots in the window; the first {shown}:",
    "backfill.slotsAsk": "Pick both dates to see the slots.",
    "backfill.slotsRefused": "No slots until the window is valid: see the message above.",
    "backfill.required": "Enter a date and time.",
    "backfill.submit": "Run",
    "toast.backfillRequested": "{count} slot(s) of “{name}” requested.",
    "toast.enabled": "“{name}” enabled.",
    "toast.disabled": "“{name}” disabled.",
    "toast.created": "Job “{name}” created.",
    "toast.saved": "Job “{name}” saved.",
    "toast.deleted": "Job “{name}” deleted.",
    "toast.retryRequested": "New run of “{name}” requested.",
    "toast.forbidden": "Not allowed: {message}",
    "toast.error": "Error: {message}",
    "toast.network": "Cannot reach the server.",

    "status.success": "Succeeded",
    "status.succeeded": "Succeeded",
    "status.failed": "Failed",
    "status.timed_out": "Timed out",
    "status.running": "Running",
    "status.cancelled": "Cancelled",
    "status.skipped": "Skipped",
    "status.queued": "Queued",
    "status.pending": "Queued",
    "status.retrying": "Retry pending",
    "status.missed": "Missed",

    "trigger.scheduled": "Scheduled",
    "trigger.manual": "Manual",
    "trigger.retry": "Retry",
    "trigger.catchup": "Catch-up",
    "trigger.backfill": "Backfill",

    "editor.titleNew": "New job",
    "editor.titleEdit": "Edit job",
    "editor.close": "Close",
    "editor.basics": "Identity",
    "editor.name": "Kubernetes name",
    "editor.nameHint": "Lowercase letters, digits and hyphens. Cannot be changed later.",
    "editor.namespace": "Namespace",
    "editor.displayName": "Display name",
    "editor.description": "Description",
    "editor.category": "Category",
    "editor.categoryHint": "Lowercase, e.g. biz, system, maintenance.",
    "editor.target": "Target",
    "editor.targetHint": "A target the workers offer, e.g. noop, http, biz:pipeline.",
    "editor.schedule": "Schedule",
    "editor.mode": "Type",
    "editor.modeTimes": "Times of day",
    "editor.modeInterval": "Interval",
    "editor.modeCron": "Cron",
    "editor.timeN": "Time {n}",
    "editor.removeTime": "Remove time {n}",
    "editor.addTime": "Add",
    "editor.addTimeLabel": "Add time",
    "editor.every": "Every",
    "editor.unit": "Unit",
    "editor.minutes": "minutes",
    "editor.hours": "hours",
    "editor.cron": "Cron expression",
    "editor.cronHint": "5 fields (minute hour day month weekday), 6 with seconds, @daily, @every 5m…",
    "editor.timeZone": "Time zone",
    "editor.settings": "Settings",
    "editor.timeout": "Timeout",
    "editor.timeoutUnit": "minutes",
    "editor.attempts": "Attempts on failure",
    "editor.attemptsHint": "Total attempts per run, the first one included.",
    "editor.jitter": "Spread the start (jitter)",
    "editor.jitterUnit": "seconds",
    "editor.jitterHint": "Each run starts up to this long after its slot, the same delay for the same slot. 0: on the slot.",
    "editor.schedules": "More schedules",
    "editor.schedulesHint": "One a line: cron, or cron | Time/Zone. A slot two share runs once.",
    "editor.exclude": "Exclusions",
    "editor.excludeHint": "One a line: a date (YYYY-MM-DD, the whole day) or a 5-field cron. Those slots never run.",
    "editor.catchUp": "Catch-up window",
    "editor.catchUpHint": "After an outage, only slots this recent follow the missed-run policy; older ones are missed.",
    "editor.dst": "Daylight saving",
    "editor.dstDefault": "Cron rule",
    "editor.dstRunAfterGap": "Skipped hour: run at its end",
    "editor.dstSkip": "Skipped hour: do not run",
    "editor.dstOnce": "Repeated hour: once",
    "editor.dstBoth": "Repeated hour: in both",
    "editor.dstHint": "On the nights clocks change. Default: as cron does.",
    "editor.concurrency": "Overlap",
    "editor.concurrencyAllow": "Run alongside (default)",
    "editor.concurrencyForbid": "Skip the slot",
    "editor.concurrencyReplace": "Cancel the running one",
    "editor.concurrencyBufferOne": "Wait (at most one)",
    "editor.concurrencyBufferAll": "Wait (all, in order)",
    "editor.concurrencyHint": "When a slot comes due while the previous run is still going.",
    "editor.dstRepeated": "Repeated hour",
    "editor.suspendReason": "Why paused",
    "editor.startTime": "Start",
    "editor.endTime": "End",
    "editor.windowHint": "Optional, with an offset (e.g. 2026-04-01T00:00:00-03:00): no slot outside this window runs.",
    "editor.maxRuns": "Run limit",
    "editor.maxRunsHint": "Only the first N slots from the start run (a missed slot counts). Needs a start.",
    "editor.advanced": "Advanced",
    "editor.params": "Parameters (JSON)",
    "editor.paramsHint": "JSON object passed to the target.",
    "editor.cancel": "Cancel",
    "editor.save": "Save",
    "editor.saving": "Saving…",
    "editor.delete": "Delete",
    "editor.deleteConfirm": "Confirm delete",
    "editor.loading": "Loading…",
    "editor.previewChecking": "Checking schedule…",
    "editor.previewNext": "Next runs",
    "editor.cronResult": "Cron: {cron}",
    "editor.errTimesMinutes":
      "The times need the same minutes (e.g. 12:30, 18:30, 20:30) or must form an hours × minutes grid. Use Cron mode for anything else.",
    "editor.errTimesEmpty": "Add at least one time.",
    "editor.errTimeInvalid": "Fill in every time (HH:MM).",
    "editor.errInterval": "Enter a whole number greater than zero.",
    "editor.errRequired": "Required.",
    "editor.errName": "Use up to 63 lowercase letters, digits and hyphens, starting and ending with a letter or digit.",
    "editor.errJson": "Invalid JSON: {message}",
    "editor.errJsonObject": "Parameters must be a JSON object ({ … }).",
    "editor.errNumber": "Enter a number between {min} and {max}.",
    "editor.errSummary": "Fix the fields marked below before saving.",
    "editor.conflict": "This job was changed elsewhere after you opened it. Reload to see the current version (your changes will be discarded).",
    "editor.reload": "Reload",
    "editor.nameTaken": "A job with this name already exists in this namespace.",
    "editor.notFound": "This job no longer exists.",

    "history.title": "History",
    "history.subtitle": "{name}",
    "history.caption": "Runs of {name}, newest first",
    "history.slot": "Scheduled for",
    "history.status": "Status",
    "history.trigger": "Trigger",
    "history.attempt": "Attempt",
    "history.started": "Started",
    "history.duration": "Duration",
    "history.worker": "Worker",
    "history.details": "Error / output",
    "history.output": "Output",
    "history.more": "Details",
    "history.logs": "Pod logs",
    "history.logsLoading": "Loading logs…",
    "history.logsNone": "No Job of this run (history limits delete old ones).",
    "history.empty": "No runs recorded yet.",
    "history.loading": "Loading…",
    "history.prev": "Previous",
    "history.next": "Next",
    "history.range": "{from}–{to} of {total}",
    "history.pagination": "History pages",
    "history.manual": "manual",
    "history.scroll": "Runs table (scroll for more)",

    "queue.title": "Queue",
    "queue.waiting": "Waiting",
    "queue.delayed": "Delayed retries",
    "queue.inFlight": "In flight",
    "queue.workers": "Live workers",
    "queue.inFlightByWorker": "In flight, per worker",
    "queue.delayedList": "Delayed retries",
    "queue.failures": "Recent failures",
    "queue.liveWorkers": "Workers and targets",
    "queue.pools": "By worker pool",
    "queue.poolSummary": "{waiting} waiting (the oldest for {oldest}) · {inFlight} running · {delayed} retries · {workers} workers",
    "queue.retry": "Retry",
    "queue.retryLabel": "Retry: {name}",
    "queue.noInFlight": "Nothing running right now.",
    "queue.noDelayed": "No retries waiting.",
    "queue.noFailures": "No recent failures.",
    "queue.showAll": "Show all ({n})",
    "queue.showLess": "Show fewer",
    "queue.noWorkers": "No live workers.",
    "queue.dueAt": "at {time}",
    "queue.since": "since {time}",
    "queue.lastSeen": "seen {time}",
    "queue.attempt": "attempt {n}",
    "queue.targets": "Targets",
    "queue.loading": "Loading queue…",
    "queue.deadLetters": "Dead letters",
    "queue.deadHint": "Runs no worker could run, with why; they never run again by themselves.",
    "queue.noDeadLetters": "No dead letters.",
    "queue.deadHidden": "{n} more not listed (older, of jobs you cannot see, or unreadable).",

    "auth.title": "Sign in to Sundial",
    "auth.explain": "Enter a Kubernetes bearer token (for example the output of “kubectl create token …”). It is kept in this tab only.",
    "auth.token": "Kubernetes bearer token",
    "auth.submit": "Sign in",
    "auth.rejected": "The server rejected this token.",

    "time.today": "today",
    "time.tomorrow": "tomorrow",
    "time.yesterday": "yesterday",
  },
};

function initialLang() {
  try {
    const saved = localStorage.getItem(STORAGE_KEY);
    if (LANGS.includes(saved)) return saved;
  } catch {
    // storage disabled: fall through to the default
  }
  return DEFAULT_LANG;
}

let current = initialLang();
const listeners = new Set();

export function getLang() {
  return current;
}

/** Switch the language, remember it and tell every listener (which re-render their text). */
export function setLang(lang) {
  if (!LANGS.includes(lang)) return;
  current = lang;
  try {
    localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    // not remembered, still switched
  }
  document.documentElement.lang = lang;
  applyStatic();
  for (const listener of listeners) listener(lang);
}

export function onLangChange(listener) {
  listeners.add(listener);
}

/** `t("job.editLabel", {name: "x"})`; a missing key shows itself, so it is noticed. */
export function t(key, params = {}) {
  const text = DICT[current][key] ?? DICT[DEFAULT_LANG][key] ?? key;
  return text.replace(/\{(\w+)\}/g, (match, name) => (name in params ? String(params[name]) : match));
}

export function hasKey(key) {
  return key in DICT[current];
}

/**
 * Fill static markup: `data-i18n="key"` sets the text, `data-i18n-attr="aria-label:key,title:key"`
 * sets attributes.
 */
export function applyStatic(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) {
    el.textContent = t(el.dataset.i18n);
  }
  for (const el of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of el.dataset.i18nAttr.split(",")) {
      const [attr, key] = pair.split(":").map((s) => s.trim());
      el.setAttribute(attr, t(key));
    }
  }
  document.title = t("app.title");
}

// ---------------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------------

const formatterCache = new Map();

function formatter(requested) {
  // 24-hour clock in both languages, like the schedules themselves ("12:00, 18:00, 20:00").
  const options = "hour" in requested || "timeStyle" in requested ? { hourCycle: "h23", ...requested } : requested;
  const key = JSON.stringify([current, options]);
  let fmt = formatterCache.get(key);
  if (!fmt) {
    try {
      fmt = new Intl.DateTimeFormat(current, options);
    } catch {
      // unknown time zone: fall back to the browser's
      const { timeZone: _ignored, ...rest } = options;
      fmt = new Intl.DateTimeFormat(current, rest);
    }
    formatterCache.set(key, fmt);
  }
  return fmt;
}

function dayKey(date, timeZone) {
  return formatter({ timeZone, year: "numeric", month: "2-digit", day: "2-digit" }).format(date);
}

/** Full date and time in `timeZone`, e.g. "28/11/2026 18:00:05". */
export function formatDateTime(iso, timeZone) {
  const date = toDate(iso);
  if (!date) return "—";
  return formatter({ timeZone, dateStyle: "short", timeStyle: "medium" }).format(date);
}

/** "18:00:05" in `timeZone`. */
export function formatTime(iso, timeZone) {
  const date = toDate(iso);
  if (!date) return "—";
  return formatter({ timeZone, timeStyle: "medium" }).format(date);
}

/** The calendar day of `iso` in `timeZone`, for comparisons. */
export function formatDay(iso, timeZone) {
  const date = toDate(iso);
  return date ? dayKey(date, timeZone) : "";
}

/** Just the time of day when `iso` is today in `timeZone`, otherwise "amanhã 12:00" or "30/11 12:00". */
export function formatWhen(iso, timeZone, now = new Date()) {
  const date = toDate(iso);
  if (!date) return "—";
  const time = formatter({ timeZone, hour: "2-digit", minute: "2-digit" }).format(date);
  const day = dayKey(date, timeZone);
  if (day === dayKey(now, timeZone)) return time;
  const oneDay = 86400000;
  if (day === dayKey(new Date(now.getTime() + oneDay), timeZone)) return `${t("time.tomorrow")} ${time}`;
  if (day === dayKey(new Date(now.getTime() - oneDay), timeZone)) return `${t("time.yesterday")} ${time}`;
  const date2 = formatter({ timeZone, day: "2-digit", month: "2-digit" }).format(date);
  return `${date2} ${time}`;
}

/** Relative wording: "em 5 minutos", "há 2 horas". */
export function formatRelative(iso, now = new Date()) {
  const date = toDate(iso);
  if (!date) return "";
  const seconds = Math.round((date.getTime() - now.getTime()) / 1000);
  const abs = Math.abs(seconds);
  const rtf = new Intl.RelativeTimeFormat(current, { numeric: "auto" });
  if (abs < 60) return rtf.format(seconds, "second");
  if (abs < 3600) return rtf.format(Math.round(seconds / 60), "minute");
  if (abs < 86400) return rtf.format(Math.round(seconds / 3600), "hour");
  return rtf.format(Math.round(seconds / 86400), "day");
}

/** "45s", "2m 5s", "1h 2m", "120ms". */
export function formatDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(Number(ms))) return "—";
  const value = Math.max(0, Number(ms));
  if (value < 1000) return `${Math.round(value)}ms`;
  let seconds = Math.round(value / 1000);
  const hours = Math.floor(seconds / 3600);
  seconds -= hours * 3600;
  const minutes = Math.floor(seconds / 60);
  seconds -= minutes * 60;
  if (hours) return minutes ? `${hours}h ${minutes}m` : `${hours}h`;
  if (minutes) return seconds ? `${minutes}m ${seconds}s` : `${minutes}m`;
  return `${seconds}s`;
}

export function toDate(iso) {
  if (!iso) return null;
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** The label of a run status, or the raw value when unknown. */
export function statusLabel(status) {
  return hasKey(`status.${status}`) ? t(`status.${status}`) : String(status ?? "—");
}

export function triggerLabel(trigger) {
  return hasKey(`trigger.${trigger}`) ? t(`trigger.${trigger}`) : String(trigger ?? "—");
}
