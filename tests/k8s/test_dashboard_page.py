"""The /agendamentos page in headless Chromium, against a real sundial-dashboard.

Behind the page run the local kube-apiserver, PostgreSQL, Redis, the operator and a worker, so
every click ends on a ScheduledJob (checked with the real kubectl) and every run shown was really
run. Screenshots of each step go to SUNDIAL_TEST_ARTIFACTS (default .artifacts/screenshots).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from sundial.devstack.controlplane import ControlPlane
from sundial.devstack.services import Services, free_port
from tests.k8s.browser import Screenshots, chromium, page_context
from tests.k8s.conftest import (
    DashboardHandle,
    SundialProcess,
    dashboard_process,
    exists,
    kube_spec,
    wait_for_dashboard,
    wait_until,
)
from tests.k8s.test_dashboard_api import POISON_REASON, bury_dead_letters

pytestmark = [pytest.mark.k8s, pytest.mark.browser]

TIMEOUT_MS = 20_000
RUN_TIMEOUT_MS = 60_000
CONTROLS = "input, select, button, textarea"
expect.set_options(timeout=TIMEOUT_MS)
DASH = "\N{EN DASH}"  # the pager reads "1<en dash>10 de 37"


# ---- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    with page_context(browser) as ctx:
        yield ctx


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A page that fails the test on any uncaught JavaScript error."""
    opened = context.new_page()
    opened.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    assert not errors, f"uncaught JavaScript errors on the page: {errors}"


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Screenshots:
    return Screenshots(request.node.name)


@pytest.fixture(scope="module")
def read_only_dashboard(
    sundial_dashboard: DashboardHandle, sundial_env: dict[str, str], process_logs: Path
) -> Iterator[str]:
    """A second dashboard over the same cluster in wall-display (read-only) mode."""
    port = free_port()
    process: SundialProcess = dashboard_process(
        sundial_env, process_logs / "dashboard-read-only.log", port,
        default_namespace=sundial_dashboard.namespace, read_only="true",
    ).start()
    try:
        wait_for_dashboard(process, port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


# ---- helpers ------------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def open_signed_in(page: Page, url: str, token: str) -> None:
    """Open the page with `#token=` (as `make demo` prints it) and wait for the job list."""
    page.goto(f"{url}/agendamentos#token={token}")
    expect(page.locator("#jobs-loading")).to_be_hidden()


def create_job(api: httpx.Client, name: str, display: str, **spec: Any) -> dict[str, Any]:
    body = {"name": name, "spec": {"displayName": display, "target": "noop", "schedule": "0 3 * * *",
                                   "category": "page", **spec}}
    response = api.post("/api/jobs", json=body)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def card(page: Page, display: str) -> Locator:
    return page.locator("li.job-card").filter(has=page.get_by_role("heading", name=display, exact=True))


def editor(page: Page) -> Locator:
    return page.locator("dialog#editor")


def runs_total(api: httpx.Client, job_id: str) -> int:
    response = api.get(f"/api/jobs/{job_id}/runs", params={"limit": 1})
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


def unnamed_controls(scope: Locator) -> list[str]:
    """Visible form controls of `scope` without an accessible name (Playwright computes it)."""
    missing = []
    for control in scope.locator(CONTROLS).all():
        if not control.is_visible():
            continue
        try:
            expect(control).to_have_accessible_name(re.compile(r"\S"), timeout=500)
        except AssertionError:
            missing.append(control.evaluate("el => el.outerHTML.slice(0, 200)"))
    return missing


def focused(page: Page) -> dict[str, str]:
    """What has keyboard focus: its tag, role and accessible-ish name."""
    result: dict[str, str] = page.evaluate(
        """() => {
          const el = document.activeElement;
          const text = (node) => {
            if (!node) return '';
            const copy = node.cloneNode(true);
            copy.querySelectorAll('[aria-hidden="true"]').forEach(hidden => hidden.remove());
            return copy.textContent;
          };
          const named = el.getAttribute('aria-labelledby');
          const name = el.getAttribute('aria-label')
            || (named ? named.split(' ').map(id => text(document.getElementById(id))).join(' ') : '')
            || (el.labels && el.labels[0] ? text(el.labels[0]) : '')
            || text(el);
          return {tag: el.tagName.toLowerCase(), role: el.getAttribute('role') || el.type || '',
                  name: name.trim().replace(/\\s+/g, ' '), outline: getComputedStyle(el).outlineStyle,
                  inEditor: String(Boolean(el.closest('#editor')))};
        }"""
    )
    return result


# ---- the page -----------------------------------------------------------------------------


def test_page_signs_in_with_the_url_token_and_speaks_portuguese(
    page: Page, sundial_dashboard: DashboardHandle, api: httpx.Client, shots: Screenshots
) -> None:
    create_job(api, unique("hello"), "Pipeline BIZ", schedule="0 12,18,20 * * *")
    open_signed_in(page, sundial_dashboard.url, sundial_dashboard.admin_token)
    # The token left the address bar for sessionStorage.
    assert "token" not in page.url
    assert page.evaluate("sessionStorage.getItem('sundial.token')") == sundial_dashboard.admin_token
    expect(page.locator("html")).to_have_attribute("lang", "pt-BR")
    expect(page.get_by_role("heading", name="Agendamentos", level=1)).to_be_visible()
    expect(page.locator("#user-info")).to_have_text("Conectado como admin")
    # Other test modules' jobs (in their own namespaces) may carry the same display name.
    job = card(page, "Pipeline BIZ").filter(has_text=sundial_dashboard.namespace)
    expect(job).to_contain_text("12:00, 18:00, 20:00")
    expect(job).to_contain_text("Nunca executou")
    expect(job.locator(".badge-cat")).to_have_text("PAGE")
    shots.take(page, "list")


def test_sign_in_form_when_there_is_no_token(
    page: Page, sundial_dashboard: DashboardHandle, shots: Screenshots
) -> None:
    page.goto(f"{sundial_dashboard.url}/schedules")
    form = page.locator("#signin")
    expect(form.get_by_role("heading", name="Entrar no Sundial")).to_be_visible()
    expect(page.locator("#panel-jobs")).to_be_hidden()
    token = page.get_by_label("Token bearer do Kubernetes")
    token.fill("not-a-valid-token")
    token.press("Enter")
    expect(page.locator("#signin-token-error")).to_have_text("Token recusado pelo servidor.")
    expect(token).to_have_attribute("aria-invalid", "true")
    shots.take(page, "rejected")
    token.fill(sundial_dashboard.admin_token)
    page.get_by_role("button", name="Entrar").click()
    expect(page.get_by_role("heading", name="Agendamentos", level=1)).to_be_visible()
    expect(form).to_be_hidden()
    shots.take(page, "signed-in")


@pytest.mark.parametrize(
    ("mode", "value", "cron", "words"),
    [
        pytest.param("times", ["08:30", "12:30", "18:30"], "30 8,12,18 * * *", "08:30, 12:30, 18:30", id="times"),
        pytest.param("times", ["08:00", "08:30", "17:00", "17:30"], "0,30 8,17 * * *",
                     "08:00, 08:30, 17:00, 17:30", id="times-grid"),
        pytest.param("interval", ["15", "minutes"], "*/15 * * * *", "A cada 15 minutos", id="interval-minutes"),
        pytest.param("interval", ["2", "hours"], "0 */2 * * *", "A cada 2 horas", id="interval-hours"),
        pytest.param("interval", ["7", "minutes"], "@every 7m", "A cada 7 minutos", id="interval-every"),
        pytest.param("cron", ["0 9 * * 1-5"], "0 9 * * 1-5", None, id="cron"),
    ],
)
def test_create_a_job_in_each_schedule_mode(
    page: Page,
    sundial_dashboard: DashboardHandle,
    sundial_crds: ControlPlane,
    shots: Screenshots,
    mode: str,
    value: list[str],
    cron: str,
    words: str | None,
) -> None:
    name = unique(f"new-{mode}")
    display = f"Novo {name}"
    open_signed_in(page, sundial_dashboard.url, sundial_dashboard.admin_token)
    page.get_by_role("button", name="Novo job").click()
    dialog = editor(page)
    expect(dialog.get_by_role("heading", name="Novo job")).to_be_visible()
    expect(dialog.get_by_label("Nome no Kubernetes")).to_be_focused()
    # The namespace defaults to GET /api/me's defaultNamespace.
    expect(dialog.get_by_label("Namespace")).to_have_value(sundial_dashboard.namespace)
    expect(dialog.get_by_label("Fuso horário")).to_have_value("America/Sao_Paulo")
    dialog.get_by_label("Nome no Kubernetes").fill(name)
    dialog.get_by_label("Nome de exibição").fill(display)
    dialog.get_by_label("Categoria", exact=True).fill("page")
    dialog.get_by_label("Alvo", exact=True).fill("noop")

    if mode == "times":
        expect(dialog.get_by_role("radio", name="Horários")).to_be_checked()
        for index, time in enumerate(value, start=1):
            if index > 1:
                dialog.get_by_role("button", name="Adicionar horário").click()
            dialog.get_by_label(f"Horário {index}", exact=True).fill(time)
    elif mode == "interval":
        dialog.get_by_role("radio", name="Intervalo").check()
        dialog.get_by_label("A cada").fill(value[0])
        dialog.get_by_label("Unidade").select_option(value[1])
    else:
        dialog.get_by_role("radio", name="Cron").check()
        dialog.get_by_label("Expressão cron").fill(value[0])

    # Before saving: the schedule in words and its next three fire times, from the API.
    preview = dialog.locator("#schedule-preview")
    expect(preview).to_be_visible()
    if words:
        expect(dialog.locator("#preview-words")).to_have_text(words)
    if mode != "cron":
        expect(dialog.locator("#preview-cron")).to_have_text(f"Cron: {cron}")
    expect(dialog.locator("#preview-next")).to_have_text(re.compile(r"^[^·]+ · [^·]+ · [^·]+$"))
    expect(dialog.locator("#f-schedule-error")).to_be_hidden()
    shots.take(page, "filled")

    dialog.get_by_role("button", name="Salvar").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#status-region")).to_contain_text(f"Job “{display}” criado.")
    created = card(page, display)
    expect(created).to_be_visible()
    expect(created.locator(".schedule-text")).to_have_text(words or re.compile(r"\S"))
    shots.take(page, "created")

    spec = kube_spec(sundial_crds, sundial_dashboard.namespace, name)
    assert spec["schedule"] == cron
    assert spec["target"] == "noop"
    assert spec["timeZone"] == "America/Sao_Paulo"
    assert spec["timeoutSeconds"] == 300
    assert spec["retry"]["attempts"] == 3
    assert spec.get("suspend", False) is False


def test_edit_populates_the_form_and_a_concurrent_change_is_a_conflict(
    page: Page, sundial_dashboard: DashboardHandle, sundial_crds: ControlPlane, api: httpx.Client,
    shots: Screenshots,
) -> None:
    name = unique("edit")
    display = f"Editar {name}"
    ns = sundial_dashboard.namespace
    create_job(api, name, display, schedule="30 12,18,20 * * *", timeoutSeconds=600, retry={"attempts": 5})
    open_signed_in(page, sundial_dashboard.url, sundial_dashboard.admin_token)
    job = card(page, display)
    edit_button = job.get_by_role("button", name=f"Editar {display}")
    with page.expect_response(re.compile(rf"/api/jobs/{ns}/{name}$")):
        edit_button.click()
    dialog = editor(page)
    expect(dialog.get_by_role("heading", name="Editar job")).to_be_visible()
    expect(dialog.get_by_label("Nome no Kubernetes")).to_be_hidden()  # names cannot change
    expect(dialog.locator("#f-ident")).to_have_text(f"{ns}/{name}")
    expect(dialog.get_by_role("radio", name="Horários")).to_be_checked()
    for index, time in enumerate(["12:30", "18:30", "20:30"], start=1):
        expect(dialog.get_by_label(f"Horário {index}", exact=True)).to_have_value(time)
    expect(dialog.get_by_label("Timeout")).to_have_value("10")
    expect(dialog.get_by_label("Tentativas em falha")).to_have_value("5")
    shots.take(page, "populated")

    dialog.get_by_role("radio", name="Intervalo").check()
    dialog.get_by_label("A cada").fill("2")
    dialog.get_by_label("Unidade").select_option("hours")
    dialog.get_by_label("Tentativas em falha").fill("2")
    expect(dialog.locator("#preview-words")).to_have_text("A cada 2 horas")
    dialog.get_by_role("button", name="Salvar").click()
    expect(dialog).to_be_hidden()
    expect(edit_button).to_be_focused()  # focus returns to the button that opened the dialog
    spec = kube_spec(sundial_crds, ns, name)
    assert (spec["schedule"], spec["retry"]["attempts"], spec["timeoutSeconds"]) == ("0 */2 * * *", 2, 600)
    expect(job.locator(".schedule-text")).to_have_text("A cada 2 horas")

    # Someone else edits the spec while the dialog is open: saving must not overwrite it.
    with page.expect_response(re.compile(rf"/api/jobs/{ns}/{name}$")):
        edit_button.click()
    expect(dialog.get_by_role("radio", name="Intervalo")).to_be_checked()
    sundial_crds.kubectl("patch", "sdj", name, "-n", ns, "--type=merge",
                         "-p", json.dumps({"spec": {"description": "changed elsewhere"}}))
    dialog.get_by_label("Nome de exibição").fill(f"{display} (mine)")
    dialog.get_by_role("button", name="Salvar").click()
    alert = dialog.locator("#editor-alert")
    expect(alert).to_contain_text("alterado em outro lugar")
    reload = alert.get_by_role("button", name="Recarregar")
    expect(reload).to_be_focused()
    shots.take(page, "conflict")
    assert kube_spec(sundial_crds, ns, name).get("displayName") == display
    reload.click()
    expect(dialog.get_by_label("Descrição")).to_have_value("changed elsewhere")
    expect(alert).to_be_hidden()
    dialog.get_by_label("Nome de exibição").fill(f"{display} (mine)")
    dialog.get_by_role("button", name="Salvar").click()
    expect(dialog).to_be_hidden()
    spec = kube_spec(sundial_crds, ns, name)
    assert (spec["displayName"], spec["description"]) == (f"{display} (mine)", "changed elsewhere")


def test_the_overlap_policy_is_chosen_in_the_advanced_section(
    page: Page, sundial_dashboard: DashboardHandle, sundial_crds: ControlPlane, api: httpx.Client,
) -> None:
    name = unique("overlap")
    display = f"Sobreposição {name}"
    ns = sundial_dashboard.namespace
    create_job(api, name, display, concurrencyPolicy="BufferAll")
    open_signed_in(page, sundial_dashboard.url, sundial_dashboard.admin_token)
    edit_button = card(page, display).get_by_role("button", name=f"Editar {display}")
    with page.expect_response(re.compile(rf"/api/jobs/{ns}/{name}$")):
        edit_button.click()
    dialog = editor(page)
    overlap = dialog.get_by_label("Sobreposição")
    expect(overlap).to_be_visible()  # the advanced section opens for a policy other than the default
    expect(overlap).to_have_value("BufferAll")
    overlap.select_option(label="Esperar (no máximo um)")
    dialog.get_by_role("button", name="Salvar").click()
    expect(dialog).to_be_hidden()
    assert kube_spec(sundial_crds, ns, name)["concurrencyPolicy"] == "BufferOne"

    with page.expect_response(re.compile(rf"/api/jobs/{ns}/{name}$")):
        edit_button.click()
    overlap.select_option(label="Executar junto (padrão)")
    dialog.get_by_role("button", name="Salvar").click()
    expect(dialog).to_be_hidden()
    assert kube_spec(sundial_crds, ns, name).get("concurrencyPolicy", "Allow") == "Allow"


def test_toggle_a_job_off_and_on(
    page: Page, sundial_dashboard: DashboardHandle, sundial_crds: ControlPlane, api: httpx.Client,
    shots: Screenshots,
) -> None:
    name = unique("toggle")
    display = f"Alternar {name}"
    ns = sundial_dashboard.namespace
    create_job(api, name, display)
    open_signed_in(page, sundial_dashboard.url, sundial_dashboard.admin_token)
    switch = page.get_by_role("switch", name=display)
    expect(switch).to_be_checked()
    job = card(page, display)

    switch.focus()
    page.keyboard.press("Space")  # operable from the keyboard
    expect(switch).not_to_be_checked()
    wait_until("spec.suspend true", lambda: kube_spec(sundial_crds, ns, name).get("suspend") is True, timeout=20)
    expect(page.locator("#status-region")).to_contain_text(f"“{display}” desativado.")
    expect(job.locator(".badge-state")).to_have_text("Desativado")
    expect(switch).to_be_focused()
    shots.take(page, "off")

    switch.click()
    expect(switch).to_be_checked()
    wait_until("spec.suspend false", lambda: kube_spec(sundial_crds, ns, name).get("suspend") is False, timeout=20)
    expect(job.locator(".badge-state")).to_have_text("Ativado")  # read out, not shown
    expect(job.locator(".badge-state")).to_have_class(re.compile(r"\bsr-only\b"))
    shots.take(page, "on")


def test_run_now_shows_up_in_the_open_history_without_reloading(
    page: Page, sundial_dashboard: DashboardHandle, api: httpx.Client, shots: Screenshots
) -> None:
    name = unique("run")
    display = f"Executar {name}"
    job_id = f"{sundial_dashboard.namespace}/{name}"
    create_job(api, name, display)
    open_signed_in(page, sundial_dashboard.url, sundial_dashboard.admin_token)
    page.evaluate("window.__sameDocument = 'yes'")
    job = card(page, display)

    job.get_by_role("button", name=f"Executar agora: {display}").click()
    expect(page.locator("#status-region")).to_contain_text(f"Execução de “{display}” solicitada.")
    history_button = job.get_by_role("button", name=f"Histórico de {display}")
    history_button.click()
    dialog = page.locator("dialog#history")
    expect(dialog.get_by_role("heading", name="Histórico")).to_be_visible()
    rows = dialog.locator("tbody tr")
    expect(rows).to_have_count(1, timeout=RUN_TIMEOUT_MS)
    expect(rows.first.locator(".status-text")).to_have_text("Sucesso", timeout=RUN_TIMEOUT_MS)
    expect(rows.first).to_contain_text("Manual")
    expect(dialog.locator("#history-range")).to_have_text(f"1{DASH}1 de 1")
    shots.take(page, "first-run")

    # A second run, started elsewhere, appears in the open dialog by itself.
    response = api.post(f"/api/jobs/{job_id}/run")
    assert response.status_code == 202, response.text
    expect(rows).to_have_count(2, timeout=RUN_TIMEOUT_MS)
    expect(dialog.locator("#history-range")).to_have_text(f"1{DASH}2 de 2", timeout=RUN_TIMEOUT_MS)
    shots.take(page, "second-run")
    assert page.evaluate("window.__sameDocument") == "yes", "the page reloaded"

    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(history_button).to_be_focused()
    expect(job.locator(".last-status .status-text")).to_have_text("Sucesso", timeout=RUN_TIMEOUT_MS)
    shots.take(page, "card-after-runs")


def test_backfill_form_lists_the_slots_explains_errors_beside_fields_and_runs_each_slot_once(
    page: Page, sundial_dashboard: DashboardHandle, api: httpx.Client, shots: Screenshots
) -> None:
    name = unique("backfill")
    display = f"Passados {name}"
    job_id = f"{sundial_dashboard.namespace}/{name}"
    create_job(api, name, display, timeZone="UTC")  # 03:00 UTC every day
    open_signed_in(page, sundial_dashboard.url, sundial_dashboard.admin_token)
    opener = card(page, display).get_by_role("button", name=f"Executar horários passados: {display}")
    opener.focus()
    page.keyboard.press("Enter")  # reached and opened from the keyboard
    dialog = page.locator("dialog#backfill")
    expect(dialog.get_by_role("heading", name="Executar horários passados")).to_be_visible()
    start, end = dialog.get_by_label("De", exact=True), dialog.get_by_label("Até", exact=True)
    sequential = dialog.get_by_label("Um de cada vez")
    expect(start).to_be_focused()
    assert unnamed_controls(dialog) == []
    expect(dialog.locator("#b-slots-summary")).to_have_text("Escolha as duas datas para ver os horários.")

    # The browser's time (São Paulo, UTC-3): 1 Jan 00:00 .. 3 Jan 23:59:59 holds three 03:00 UTC slots.
    start.fill("2026-01-01T00:00:00")
    end.fill("2026-01-03T23:59:59")
    slots = dialog.locator("#b-slots li")
    expect(slots).to_have_count(3)
    expect(dialog.locator("#b-slots-summary")).to_have_text("3 horário(s) no intervalo.")
    expect(slots.first).to_contain_text("01/01/2026")
    shots.take(page, "slots")

    # Each problem beside its field, before anything is asked for.
    end.fill("2999-01-01T00:00:00")
    error = dialog.locator("#b-to-error")
    expect(error).to_contain_text("is in the future")
    expect(end).to_have_attribute("aria-invalid", "true")
    expect(slots).to_have_count(0)
    expect(dialog.locator("#b-slots-summary")).to_have_text(
        "Nenhum horário enquanto o intervalo não for válido: veja o aviso acima.")
    shots.take(page, "future")
    end.fill("2025-12-31T00:00:00")
    expect(error).to_contain_text("is before 'from'")
    start.fill("")
    dialog.get_by_role("button", name="Executar", exact=True).click()
    expect(dialog.locator("#b-from-error")).to_have_text("Informe uma data e hora.")
    expect(start).to_be_focused()
    shots.take(page, "errors")
    assert runs_total(api, job_id) == 0, "nothing ran while the form was wrong"

    start.fill("2026-01-01T00:00:00")
    end.fill("2026-01-03T23:59:59")
    expect(slots).to_have_count(3)
    expect(error).to_be_hidden()
    expect(end).not_to_have_attribute("aria-invalid", "true")
    sequential.check()
    for _ in range(12):  # Tab stays inside the open dialog
        page.keyboard.press("Tab")
        assert page.evaluate("Boolean(document.activeElement.closest('#backfill'))")
    dialog.get_by_role("button", name="Executar", exact=True).click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#status-region")).to_contain_text(f"3 horário(s) de “{display}” solicitados.")
    expect(opener).to_be_focused()
    shots.take(page, "requested")
    wait_until("three backfilled runs", lambda: runs_total(api, job_id) == 3, timeout=RUN_TIMEOUT_MS / 1000)
    runs = api.get(f"/api/jobs/{job_id}/runs", params={"limit": 10}).json()["items"]
    assert sorted((run["logicalTime"][:10], run["trigger"]) for run in runs) == [
        ("2026-01-01", "backfill"), ("2026-01-02", "backfill"), ("2026-01-03", "backfill")]


def test_backfill_form_in_english(
    page: Page, sundial_dashboard: DashboardHandle, api: httpx.Client, shots: Screenshots
) -> None:
    name = unique("backfill-en")
    display = f"Backfill {name}"
    create_job(api, name, display, timeZone="UTC")
    open_signed_in(page, sundial_dashboard.url, sundial_dashboard.admin_token)
    page.get_by_role("button", name="English").click()
    card(page, display).get_by_role("button", name=f"Run past slots: {display}").click()
    dialog = page.locator("dialog#backfill")
    expect(dialog.get_by_role("heading", name="Run past slots")).to_be_visible()
    dialog.get_by_label("From", exact=True).fill("2026-02-01T00:00:00")
    dialog.get_by_label("To", exact=True).fill("2026-02-02T23:59:59")
    expect(dialog.locator("#b-slots-summary")).to_have_text("2 slot(s) in the window.")
    assert unnamed_controls(dialog) == []
    shots.take(page, "english")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


def test_history_pages(
    page: Page, sundial_dashboard: DashboardHandle, api: httpx.Client, shots: Screenshots
) -> None:
    name = unique("pages")
    display = f"Paginar {name}"
    job_id = f"{sundial_dashboard.namespace}/{name}"
    create_job(api, name, display, schedule="* * * * * *")  # every second: pages fill quickly
    wait_until("12 runs", lambda: runs_total(api, job_id) >= 12, timeout=60)
    api.post(f"/api/jobs/{job_id}/disable")
    open_signed_in(page, sundial_dashboard.url, sundial_dashboard.admin_token)
    card(page, display).get_by_role("button", name=f"Histórico de {display}").click()
    dialog = page.locator("dialog#history")
    rows = dialog.locator("tbody tr")
    expect(rows).to_have_count(10)
    previous = dialog.get_by_role("button", name="Anterior")
    following = dialog.get_by_role("button", name="Próxima")
    expect(previous).to_be_disabled()
    first_slot = rows.first.locator(".c-slot").inner_text()
    following.click()
    expect(dialog.locator("#history-range")).to_have_text(re.compile(rf"^11{DASH}"))
    expect(rows.first.locator(".c-slot")).not_to_have_text(first_slot)
    expect(previous).to_be_enabled()
    shots.take(page, "page-2")
    previous.click()
    expect(dialog.locator("#history-range")).to_have_text(re.compile(rf"^1{DASH}10 de \d+$"))


def test_invalid_input_is_explained_next_to_the_field_before_saving(
    page: Page, sundial_dashboard: DashboardHandle, sundial_crds: ControlPlane, shots: Screenshots
) -> None:
    name = unique("invalid")
    open_signed_in(page, sundial_dashboard.url, sundial_dashboard.admin_token)
    page.get_by_role("button", name="Novo job").click()
    dialog = editor(page)
    dialog.get_by_label("Nome no Kubernetes").fill(name)
    dialog.get_by_label("Alvo", exact=True).fill("noop")

    # A cron the API refuses: the reason shows under the field while typing.
    dialog.get_by_role("radio", name="Cron").check()
    cron = dialog.get_by_label("Expressão cron")
    cron.fill("61 * * * *")
    error = dialog.locator("#f-schedule-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("61")
    expect(cron).to_have_attribute("aria-invalid", "true")
    expect(cron).to_have_attribute("aria-describedby", re.compile(r"\bf-schedule-error\b"))
    expect(cron).to_have_accessible_description(re.compile("61"))
    expect(dialog.locator("#schedule-preview")).to_be_hidden()
    shots.take(page, "bad-cron")

    # Saving anyway: the API's 400 lands on the same field and nothing is created.
    with page.expect_response(lambda r: r.url.endswith("/api/jobs") and r.request.method == "POST") as answer:
        dialog.get_by_role("button", name="Salvar").click()
    assert answer.value.status == 400
    expect(error).to_contain_text("61")
    expect(dialog.locator("#editor-alert")).to_be_visible()
    expect(dialog).to_be_visible()
    assert not exists(sundial_crds, sundial_dashboard.namespace, name)

    # An unknown time zone is reported next to the time zone.
    cron.fill("0 9 * * *")
    expect(error).to_be_hidden()
    zone = dialog.get_by_label("Fuso horário")
    zone.fill("Mars/Base")
    zone_error = dialog.locator("#f-timeZone-error")
    expect(zone_error).to_contain_text("Mars/Base")
    expect(zone).to_have_attribute("aria-invalid", "true")
    shots.take(page, "bad-zone")
    zone.fill("America/Sao_Paulo")
    expect(zone_error).to_be_hidden()

    # Times of day a single cron expression cannot say: explained, and never sent.
    dialog.get_by_role("radio", name="Horários").check()
    dialog.get_by_label("Horário 1", exact=True).fill("08:00")
    dialog.get_by_role("button", name="Adicionar horário").click()
    dialog.get_by_label("Horário 2", exact=True).fill("17:30")
    expect(error).to_contain_text("mesmos minutos")
    expect(dialog.get_by_label("Horário 2", exact=True)).to_have_attribute("aria-invalid", "true")
    shots.take(page, "mixed-minutes")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.method) if r.url.endswith("/api/jobs") else None)
    dialog.get_by_role("button", name="Salvar").click()
    expect(dialog.get_by_label("Horário 1", exact=True)).to_be_focused()
    assert "POST" not in requests

    # A bad name is caught before the request too.
    dialog.get_by_label("Horário 2", exact=True).fill("17:00")
    dialog.get_by_label("Nome no Kubernetes").fill("Not A Name")
    dialog.get_by_role("button", name="Salvar").click()
    expect(dialog.locator("#f-name-error")).to_be_visible()
    expect(dialog.get_by_label("Nome no Kubernetes")).to_be_focused()
    dialog.get_by_role("button", name="Cancelar").click()
    expect(dialog).to_be_hidden()
    assert not exists(sundial_crds, sundial_dashboard.namespace, name)


def test_switching_language(page: Page, sundial_dashboard: DashboardHandle, shots: Screenshots) -> None:
    open_signed_in(page, sundial_dashboard.url, sundial_dashboard.admin_token)
    expect(page.locator("html")).to_have_attribute("lang", "pt-BR")
    english = page.get_by_role("button", name="English")
    expect(english).to_have_attribute("aria-pressed", "false")
    english.click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(english).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("heading", name="Schedules", level=1)).to_be_visible()
    expect(page.get_by_role("button", name="New job")).to_be_visible()
    expect(page.get_by_role("tab", name="Queue")).to_be_visible()
    assert page.title() == "Schedules · Sundial"
    shots.take(page, "english")

    # Remembered across a reload (and the token survives it in sessionStorage).
    page.reload()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", name="Schedules", level=1)).to_be_visible()
    page.get_by_role("button", name="New job").click()
    dialog = editor(page)
    expect(dialog.get_by_role("heading", name="New job")).to_be_visible()
    expect(dialog.get_by_role("radio", name="Times of day")).to_be_checked()
    expect(dialog.locator("#preview-words")).to_have_text("12:00")
    shots.take(page, "english-editor")
    page.keyboard.press("Escape")

    page.get_by_role("button", name="Português").click()
    expect(page.locator("html")).to_have_attribute("lang", "pt-BR")
    expect(page.get_by_role("heading", name="Agendamentos", level=1)).to_be_visible()


def test_queue_shows_failures_workers_and_retries(
    page: Page, sundial_dashboard: DashboardHandle, api: httpx.Client, shots: Screenshots
) -> None:
    name = unique("failing")
    display = f"Falhar {name}"
    job_id = f"{sundial_dashboard.namespace}/{name}"
    create_job(api, name, display, target="fail", retry={"attempts": 1})
    assert api.post(f"/api/jobs/{job_id}/run").status_code == 202
    wait_until("a failed run", lambda: runs_total(api, job_id) >= 1, timeout=60)

    open_signed_in(page, sundial_dashboard.url, sundial_dashboard.admin_token)
    page.get_by_role("tab", name="Fila").click()
    panel = page.get_by_role("tabpanel", name="Fila")
    expect(panel).to_be_visible()
    expect(page).to_have_url(re.compile(r"#queue$"))
    expect(panel.locator(".stat-workers dd")).not_to_have_text("0")
    expect(panel.locator("#q-workers")).to_contain_text("noop")
    failure = panel.locator("#q-failures li").filter(has_text=display)
    expect(failure).to_have_count(1)
    expect(failure.locator(".status-text")).to_have_text("Falhou")
    shots.take(page, "queue")

    failure.get_by_role("button", name=f"Tentar novamente: {display}").click()
    expect(page.locator("#status-region")).to_contain_text(f"Nova execução de “{display}” solicitada.")
    wait_until("the retried run", lambda: runs_total(api, job_id) >= 2, timeout=60)


def test_queue_lists_dead_letters_read_only(
    page: Page, sundial_dashboard: DashboardHandle, api: httpx.Client, shots: Screenshots,
    sundial_env: dict[str, str], services: Services,
) -> None:
    name = unique("poison")
    display = f"Veneno {name}"
    job = create_job(api, name, display)
    with ThreadPoolExecutor(1) as pool:  # the page's own loop stays out of it
        run_id = pool.submit(asyncio.run, bury_dead_letters(
            services.redis.url, sundial_env["SUNDIAL_REDIS_PREFIX"], job)).result()

    open_signed_in(page, sundial_dashboard.url, sundial_dashboard.admin_token)
    page.get_by_role("tab", name="Fila").click()
    panel = page.get_by_role("tabpanel", name="Fila")
    expect(panel.get_by_role("heading", name="Mensagens descartadas")).to_be_visible()
    letter = panel.locator("#q-dead li").filter(has_text=display)
    expect(letter).to_have_count(1)
    expect(letter.locator(".q-error")).to_have_text(POISON_REASON)
    expect(letter.locator(".q-meta")).to_contain_text(run_id.split(":", 1)[1])
    expect(letter.locator(".q-raw")).to_contain_text('{"attempt": "1"')
    expect(letter.locator("button")).to_have_count(0)  # read-only: nothing replays or deletes one
    expect(panel.locator("#q-dead-hidden")).to_contain_text("não listadas")
    assert unnamed_controls(panel) == []
    letter.scroll_into_view_if_needed()
    shots.take(page, "queue-dead-letters")


def test_every_control_has_a_name_and_the_keyboard_reaches_it(
    page: Page, sundial_dashboard: DashboardHandle, api: httpx.Client, shots: Screenshots
) -> None:
    name = unique("a11y")
    display = f"Acessível {name}"
    create_job(api, name, display)
    open_signed_in(page, sundial_dashboard.url, sundial_dashboard.admin_token)
    expect(card(page, display)).to_be_visible()
    assert unnamed_controls(page.locator("body")) == []

    # The editor, in each schedule mode and with the advanced section open.
    page.get_by_role("button", name="Novo job").click()
    dialog = editor(page)
    dialog.locator("#advanced summary").click()
    for mode in ("Horários", "Intervalo", "Cron"):
        dialog.get_by_role("radio", name=mode).check()
        assert unnamed_controls(dialog) == [], mode
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    card(page, display).get_by_role("button", name=f"Histórico de {display}").click()
    assert unnamed_controls(page.locator("dialog#history")) == []
    page.keyboard.press("Escape")
    page.get_by_role("tab", name="Fila").click()
    expect(page.locator("#queue-content")).to_be_visible()
    assert unnamed_controls(page.locator("#panel-queue")) == []
    page.get_by_role("tab", name="Agendamentos").click()

    # Tab from the top of a freshly loaded page reaches the toggles and every card button, with a
    # focus ring. (The token is in sessionStorage by now: a reload stays signed in.)
    page.reload()
    expect(card(page, display)).to_be_visible()
    seen: list[dict[str, str]] = []
    for _ in range(200):
        page.keyboard.press("Tab")
        now = focused(page)
        seen.append(now)
        if now["role"] == "switch" and now["name"] == display:
            shots.take(page, "switch-focused", full_page=False)
        if now["name"] == f"Executar agora: {display}":
            break
    names = [item["name"] for item in seen]
    for expected in ("Pular para o conteúdo", "Agendamentos", "Português", "English", "Novo job", "Todos",
                     display, f"Editar {display}", f"Histórico de {display}", f"Executar agora: {display}"):
        assert expected in names, f"Tab never reached {expected!r}; reached {names}"
    switch = next(item for item in seen if item["role"] == "switch" and item["name"] == display)
    assert switch["outline"] != "none", "no visible focus ring on the switch"
    assert all(item["outline"] != "none" for item in seen if item["tag"] == "button")

    # The editor opened from the keyboard keeps Tab inside and gives focus back on Escape.
    new_job = page.get_by_role("button", name="Novo job")
    new_job.focus()
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    for _ in range(40):
        page.keyboard.press("Tab")
        assert focused(page)["inEditor"] == "true", "focus left the open dialog"
    for _ in range(5):
        page.keyboard.press("Shift+Tab")
        assert focused(page)["inEditor"] == "true", "focus left the open dialog"
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(new_job).to_be_focused()


def test_polling_never_moves_keyboard_focus(
    page: Page, sundial_dashboard: DashboardHandle, api: httpx.Client
) -> None:
    name = unique("focus")
    display = f"Foco {name}"
    create_job(api, name, display)
    open_signed_in(page, sundial_dashboard.url, sundial_dashboard.admin_token)
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if r.url.endswith("/api/jobs") else None)
    button = card(page, display).get_by_role("button", name=f"Histórico de {display}")
    button.focus()
    button.evaluate("el => { el.__marked = true; }")
    # A change elsewhere makes the next polls carry different data.
    api.post(f"/api/jobs/{sundial_dashboard.namespace}/{name}/disable")
    page.wait_for_timeout(5000)
    assert len(polls) >= 2, f"expected the page to poll every 2 s, saw {len(polls)} polls"
    expect(card(page, display).locator(".badge-state")).to_have_text("Desativado")
    assert page.evaluate("document.activeElement.__marked === true"), "focus moved during a refresh"


def test_read_only_dashboard_hides_every_write(
    page: Page, sundial_dashboard: DashboardHandle, read_only_dashboard: str, api: httpx.Client,
    shots: Screenshots,
) -> None:
    name = unique("ro")
    display = f"Leitura {name}"
    create_job(api, name, display)
    open_signed_in(page, read_only_dashboard, sundial_dashboard.admin_token)
    expect(page.locator("#readonly-badge")).to_be_visible()
    expect(page.locator("#readonly-badge")).to_contain_text("somente leitura")
    job = card(page, display)
    expect(job).to_be_visible()
    expect(page.get_by_role("button", name="Novo job")).to_be_hidden()
    expect(page.get_by_role("switch", name=display)).to_be_disabled()
    expect(job.get_by_role("button", name=f"Editar {display}")).to_be_hidden()
    expect(job.get_by_role("button", name=f"Executar agora: {display}")).to_be_hidden()
    expect(job.get_by_role("button", name=f"Histórico de {display}")).to_be_visible()
    shots.take(page, "read-only")
    page.get_by_role("tab", name="Fila").click()
    expect(page.locator("#queue-content")).to_be_visible()
    expect(page.locator("#panel-queue").get_by_role("button", name=re.compile("Tentar novamente"))).to_have_count(0)


def test_a_job_that_is_not_ready_says_why_on_its_card(
    page: Page, sundial_dashboard: DashboardHandle, api: httpx.Client, shots: Screenshots
) -> None:
    name = unique("notready")
    display = f"Sem alvo {name}"
    create_job(api, name, display, target="nobody:offers-this")
    open_signed_in(page, sundial_dashboard.url, sundial_dashboard.admin_token)
    problem = card(page, display).locator(".job-problem")
    expect(problem).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(problem).to_contain_text("UnknownTarget:")
    expect(problem).to_contain_text("nobody:offers-this")
    shots.take(page, "unknown-target")


# The editor's mode -> cron rules (docs/dashboard.md), checked on the served module itself.
CONVERSIONS = [
    ("times", ["12:00", "18:00", "20:00"], "0 12,18,20 * * *"),
    ("times", ["20:00", "09:05", "12:00", "09:05"], "error:timesMinutes"),  # not a grid: 09:00 is missing
    ("times", ["20:00", "08:30", "08:00", "20:30", "08:30"], "0,30 8,20 * * *"),  # sorted, duplicates dropped
    ("times", ["09:05", "09:15", "21:05", "21:15"], "5,15 9,21 * * *"),
    ("times", ["9:05"], "5 9 * * *"),
    ("times", ["08:00", "17:30"], "error:timesMinutes"),
    ("times", [], "error:timesEmpty"),
    ("times", ["", ""], "error:timesEmpty"),
    ("times", ["25:00"], "error:timeInvalid"),
    ("interval", ["1", "minutes"], "*/1 * * * *"),
    ("interval", ["5", "minutes"], "*/5 * * * *"),
    ("interval", ["30", "minutes"], "*/30 * * * *"),
    ("interval", ["45", "minutes"], "@every 45m"),
    ("interval", ["60", "minutes"], "0 */1 * * *"),
    ("interval", ["90", "minutes"], "@every 90m"),
    ("interval", ["120", "minutes"], "0 */2 * * *"),
    ("interval", ["6", "hours"], "0 */6 * * *"),
    ("interval", ["5", "hours"], "@every 5h"),
    ("interval", ["24", "hours"], "@every 24h"),
    ("interval", ["0", "minutes"], "error:interval"),
    ("interval", ["1.5", "hours"], "error:interval"),
    ("cron", [" 0 9 * * 1-5 "], "0 9 * * 1-5"),
    ("cron", [""], "error:required"),
]


def test_schedule_modes_become_the_documented_cron(page: Page, sundial_dashboard: DashboardHandle) -> None:
    page.goto(f"{sundial_dashboard.url}/agendamentos")
    results: list[str] = page.evaluate(
        """async (cases) => {
          const m = await import('/static/schedule-form.js');
          return cases.map(([mode, value]) => {
            const form = {mode, times: value, intervalValue: value[0], intervalUnit: value[1], cron: value[0]};
            const out = m.formToCron(form);
            return out.cron ?? `error:${out.error}`;
          });
        }""",
        [[mode, value] for mode, value, _ in CONVERSIONS],
    )
    expected = [cron for _, _, cron in CONVERSIONS]
    mismatches = [(case, got) for case, got, want in zip(CONVERSIONS, results, expected, strict=True) if got != want]
    assert mismatches == []

    # And back: the API's scheduleForm fills the matching mode.
    forms: list[dict[str, Any]] = page.evaluate(
        """async () => {
          const m = await import('/static/schedule-form.js');
          return [
            m.formFromJob({spec: {schedule: '0 12,18 * * *'},
                           scheduleForm: {mode: 'times', times: ['12:00', '18:00']}}),
            m.formFromJob({spec: {schedule: '0 */2 * * *'}, scheduleForm: {mode: 'interval', intervalMinutes: 120}}),
            m.formFromJob({spec: {schedule: '@every 90m'}, scheduleForm: {mode: 'interval', intervalMinutes: 90}}),
            m.formFromJob({spec: {schedule: '0 9 L * *'}, scheduleForm: {mode: 'cron', cron: '0 9 L * *'}}),
          ];
        }"""
    )
    assert [(f["mode"], f["times"] if f["mode"] == "times" else f["intervalValue"], f["intervalUnit"], f["cron"])
            for f in forms] == [
        ("times", ["12:00", "18:00"], "minutes", "0 12,18 * * *"),
        ("interval", 2, "hours", "0 */2 * * *"),
        ("interval", 90, "minutes", "@every 90m"),
        ("cron", 5, "minutes", "0 9 L * *"),
    ]
