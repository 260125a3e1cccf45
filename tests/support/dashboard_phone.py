#!/usr/bin/env python3
"""Drives the dashboard in headless Chromium at a phone viewport (390x844), via selenium.

Usage: dashboard_phone.py PHASE OUT_JSON SHOTS_DIR [ARG]
  PHASE leader:   an admin creates, tests, pauses, edits, duplicates and deletes jobs and adds a
                  member (ARG: SINK_URL, the webhook sink as the appliance reaches it)
  PHASE viewer:   a viewer sees no write controls, no secrets, and crafted writes are refused
  PHASE rotate:   the admin sees vera online and rotates her keys (a new QR and config)
  PHASE handlers: the admin sees the bot online with its methods and tasks, builds a job that
                  calls it (handler, method, params as JSON; bad JSON explained) and runs it now
  PHASE manage:   the handler's answer in that job's history, history and audit paging, the
                  last-admin guard, a role change, disable and enable
                  (ARG: JSON {"dice": job id, "busy": id of a job with over 20 runs})
  PHASE degraded: an admin of a server with damaged rows is told so in plain words above
                  every view, sees a bad day of week named at the field, and every link on the
                  jobs list and a job's page is a 44 px tap target; a module that fails to
                  load is retried once, then explained with a button that tries again

Runs inside the test's network namespace (`ip netns exec`): the page is loaded from
http://10.88.88.1:8888/ through the namespace's WireGuard tunnel, and nothing else is reached.
Writes what it saw to OUT_JSON and PNG screenshots (390x844) to SHOTS_DIR. Any failed check
raises, prints why on stderr and exits non-zero.
"""
import json
import os
import shutil
import sys
import tempfile
import time
import traceback

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

BASE = "http://10.88.88.1:8888/"
WIDTH, HEIGHT = 390, 844
PHASE, OUT, SHOTS = sys.argv[1], sys.argv[2], sys.argv[3]
ARG = sys.argv[4] if len(sys.argv) > 4 else None
SINK_URL = ARG
result = {}


def log(*a):
    print("dashboard_phone:", *a, file=sys.stderr, flush=True)


def browser(profile):
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--user-data-dir=" + profile]:
        opts.add_argument(a)
    opts.add_experimental_option("mobileEmulation", {
        "deviceMetrics": {"width": WIDTH, "height": HEIGHT, "pixelRatio": 1.0, "touch": True},
        "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel) AppleWebKit/537.36 (KHTML, like Gecko) "
                     "Chrome/156.0 Mobile Safari/537.36"})
    service = Service("/usr/bin/chromedriver", log_path=os.path.join(profile, "chromedriver.log"))
    d = webdriver.Chrome(service=service, options=opts)
    d.set_page_load_timeout(30)
    d.set_script_timeout(30)
    return d


profile = tempfile.mkdtemp(prefix="apl-chromium-")
d = browser(profile)
wait = WebDriverWait(d, 20)


def css(testid):
    return '[data-testid="%s"]' % testid


def find(testid, timeout=20):
    return WebDriverWait(d, timeout).until(lambda d: d.find_element(By.CSS_SELECTOR, css(testid)))


def all_of(testid):
    return d.find_elements(By.CSS_SELECTOR, css(testid))


def until(what, cond, timeout=20):
    # Views re-render when they poll: an element found a moment ago may be gone; look again.
    try:
        return WebDriverWait(d, timeout, ignored_exceptions=[StaleElementReferenceException]).until(lambda d: cond())
    except TimeoutException:
        raise AssertionError("timed out waiting for " + what + "; page text:\n" + d.find_element(By.TAG_NAME, "body").text)


def steady(read):
    """`read()` again when a poll re-rendered the view between finding an element and reading
    it (a stale element); unlike `until`, any value, None and False too, is an answer."""
    for _ in range(50):
        try:
            return read()
        except StaleElementReferenceException:
            time.sleep(0.1)
    return read()


def texts(testid, attr=None):
    """The text (or attribute) of every element with this test id, read in one go."""
    return until("elements " + testid, lambda: [r.get_attribute(attr) if attr else r.text for r in all_of(testid)] or None)


def fill(testid, text):
    el = find(testid)
    el.clear()
    el.send_keys(text)
    return el


def click(testid):
    def once():
        el = find(testid)
        d.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
        el.click()
        return True
    return until("a click on " + testid, once)


def go(hash_):
    d.get(BASE + hash_)
    until("the header", lambda: "You are" in d.find_element(By.ID, "who").text)


def shot(name, scroll_to=None):
    if scroll_to is not None:
        d.execute_script("arguments[0].scrollIntoView({block: 'start'})", scroll_to)
    else:
        d.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.3)
    path = os.path.join(SHOTS, name + ".png")
    d.save_screenshot(path)
    result.setdefault("screenshots", []).append(path)


def check_layout(view):
    """No horizontal scrolling, every control labelled, every button and link at least 44 px
    tall (a tap target, WCAG 2.5.5 / Apple's guidance)."""
    sw, iw = d.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    assert iw == WIDTH, "viewport is %s px, not %s" % (iw, WIDTH)
    assert sw <= iw, "%s: horizontal scroll (%s px wide in a %s px viewport)" % (view, sw, iw)
    small = d.execute_script("""return [...document.querySelectorAll('button, a, summary')]
        .filter(b => b.offsetParent && b.getBoundingClientRect().height < 44)
        .map(b => b.textContent + ' ' + b.getBoundingClientRect().height)""")
    assert not small, "%s: tap targets under 44 px: %s" % (view, small)
    unlabelled = d.execute_script("""return [...document.querySelectorAll('input, select, textarea')]
        .filter(e => e.type !== 'hidden' && !(e.labels && e.labels.length) && !e.closest('label'))
        .map(e => e.id || e.dataset.testid || e.outerHTML.slice(0, 60))""")
    assert not unlabelled, "%s: controls without a label: %s" % (view, unlabelled)
    result.setdefault("layout_checked", []).append(view)


def assert_in_view(el, what):
    """`el` is on screen: not scrolled off above or below the viewport."""
    top, bottom, vh, y = d.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return [r.top, r.bottom, window.innerHeight, window.scrollY]", el)
    assert y > 0, "%s: the page is not scrolled, so this proves nothing" % what
    assert top >= 0 and bottom <= vh, "%s is off screen (top %s, bottom %s, viewport %s px, scrolled %s px)" % (
        what, top, bottom, vh, y)


def fetch(method, path, body=None):
    """A request from the page itself (same origin, so the browser sends our Origin)."""
    return d.execute_async_script("""
        const [method, path, body, done] = arguments;
        const opt = {method, headers: {}};
        if (body !== null) { opt.headers['Content-Type'] = 'application/json'; opt.body = JSON.stringify(body); }
        fetch(path, opt).then(async r => done([r.status, await r.text()])).catch(e => done([0, String(e)]));
    """, method, path, body)


def health_problems():
    """The sentences of the health banner; [] when it is hidden."""
    box = d.find_element(By.ID, "health")
    if not box.is_displayed():
        return []
    return [p.text for p in box.find_elements(By.CSS_SELECTOR, css("health-problem"))]


def leader():
    go("#/jobs")
    assert "You are leader (admin)" in d.find_element(By.ID, "who").text
    # The test's endpoint is a loopback address: the banner says so, and where to fix it here
    # (not a terminal command).
    problems = until("the endpoint warning in the banner", lambda: health_problems())
    result["health_before"] = problems
    assert len(problems) == 1 and "may not reach this server" in problems[0] and "Members" in problems[0], problems
    assert "appliance endpoint" not in problems[0], problems
    shot("health-endpoint")
    until("the failing job and its failure", lambda: len(all_of("job-row")) >= 1)
    # GET /api/v1/handlers exists: the section is there, empty until a handler registers.
    until("the handlers section in the menu", lambda: all_of("nav-handlers"))
    go("#/handlers")
    until("the empty handlers list", lambda: "No handler has connected yet." in d.find_element(By.TAG_NAME, "body").text)
    go("#/jobs")
    until("the jobs again", lambda: len(all_of("job-row")) >= 1)
    check_layout("jobs")

    # A new cron job, built in the form; the server previews its next fire times.
    click("new-job")
    fill("job-name", "raid-reminder")
    fill("job-schedule", "45 19 * * THU")
    Select(find("job-timezone")).select_by_value("Europe/Berlin")
    # The preview follows the typing (debounced): wait for the Thursday-evening Berlin times.
    result["preview"] = until("5 previewed Thursday fire times", lambda: (lambda t: t if len(t) == 5 and all(
        x.startswith("Thu") and "GMT+1" in x for x in t) else None)(
        [li.text for li in find("job-preview").find_elements(By.TAG_NAME, "li")]))
    # The example shows the whole address, https:// included (the server refuses it without).
    assert find("job-webhook-url").get_attribute("placeholder").startswith("https://discord.com/")
    fill("job-webhook-url", SINK_URL)
    fill("job-message", "@raiders raid in 15 minutes!")
    click_summary = d.find_element(By.XPATH, "//summary[normalize-space()='Embed (optional)']")
    click_summary.click()
    fill("embed-title", "Raid night")
    find("embed-use-color").click()
    check_layout("job form")
    shot("job-form")

    # "Send a test now" runs the action once; nothing is created.
    click("job-test")
    until("the test result", lambda: find("job-test-result").text.startswith(("Sent", "Not sent")))
    result["test_result"] = find("job-test-result").text
    assert result["test_result"].startswith("Sent"), result["test_result"]

    # A bad cron is explained at the field; what was typed stays; nothing is stored.
    fill("job-schedule", "61 19 * * THU")
    click("job-save")
    err = until("the cron error at the field", lambda: d.find_element(By.ID, "err-job-schedule").text)
    result["bad_cron_error"] = err
    assert find("job-schedule").get_attribute("aria-invalid") == "true"
    assert find("job-name").get_attribute("value") == "raid-reminder", "the form lost the name"
    assert find("job-webhook-url").get_attribute("value") == SINK_URL, "the form lost the URL"
    assert find("job-message").get_attribute("value") == "@raiders raid in 15 minutes!"
    status, text = fetch("GET", "/api/v1/jobs?name=raid")
    assert status == 200 and json.loads(text)["jobs"] == [], "a job was stored: " + text
    shot("job-form-error", scroll_to=find("job-schedule"))

    # Fixed, saved: the job's page shows it with its next fire.
    fill("job-schedule", "45 19 * * THU")
    until("the error to clear and the preview to return", lambda: not d.find_element(By.ID, "err-job-schedule").text
          and len(find("job-preview").find_elements(By.TAG_NAME, "li")) == 5)
    click("job-save")
    until("the new job's page", lambda: "#/job/" in d.current_url and all_of("job-row"))
    result["job_id"] = d.current_url.rsplit("/", 1)[1]
    until("its next fire", lambda: "Thu" in find("job-next").text)

    # Pause, then edit (rename and a new time), then duplicate and delete the copy.
    click("job-pause")
    until("paused", lambda: all_of("job-resume"))
    click("job-edit")
    until("the edit form", lambda: find("job-name").get_attribute("value") == "raid-reminder")
    assert find("job-schedule").get_attribute("value") == "45 19 * * THU"
    assert Select(find("job-timezone")).first_selected_option.get_attribute("value") == "Europe/Berlin"
    fill("job-name", "raid-reminder-edited")
    fill("job-schedule", "30 20 * * THU")
    until("the new preview", lambda: "08:30" in find("job-preview").text)
    click("job-save")
    until("the edited job", lambda: "#/job/" in d.current_url and
          any("raid-reminder-edited" in r.text for r in all_of("job-row")))
    until("the new schedule", lambda: "cron 30 20 * * THU (Europe/Berlin)" in find("job-row").text)
    click("job-duplicate")
    until("the duplicate form", lambda: find("job-name").get_attribute("value") == "raid-reminder-edited copy")
    click("job-save")
    until("the copy's page", lambda: "#/job/" in d.current_url and d.current_url.rsplit("/", 1)[1] != result["job_id"])
    copy_id = d.current_url.rsplit("/", 1)[1]
    click("job-delete")
    click("confirm-yes")
    until("the jobs list without the copy", lambda: d.current_url.endswith("#/jobs") and
          not any(r.get_attribute("data-id") == copy_id for r in all_of("job-row")) and all_of("job-row"))
    msg = d.find_element(By.ID, "msg")
    assert msg.text == "Deleted raid-reminder-edited copy." and "bad" not in msg.get_attribute("class"), msg.text
    result["jobs_after"] = texts("job-row", "data-name")
    shot("jobs")

    # Failures across all jobs, with the error text.
    click("nav-failures")
    until("a failed run with its error", lambda: all_of("run-error"))
    result["failure_job"], result["failure_error"] = until("the newest failure", lambda: next((
        (r.find_element(By.TAG_NAME, "a").text, r.find_element(By.CSS_SELECTOR, css("run-error")).text)
        for r in all_of("run-row") if r.find_elements(By.CSS_SELECTOR, css("run-error"))), None))
    check_layout("failures")
    shot("failures")

    # An admin adds a member: the QR code, the config text and the download link.
    click("nav-members")
    until("the member list", lambda: all_of("peer-row"))
    click("new-peer")
    # The name's rule, as the server checks it: a phone keyboard offers capitals.
    assert "lowercase" in d.find_element(By.ID, "hint-peer-name").text, d.find_element(By.ID, "hint-peer-name").text
    fill("peer-name", "vera")
    Select(find("peer-role")).select_by_value("viewer")
    click("peer-save")
    qr = find("peer-qr")
    until("the QR image", lambda: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", qr))
    d.execute_script("arguments[0].scrollIntoView({block: 'start'})", qr)
    time.sleep(0.3)
    qr.screenshot(os.path.join(SHOTS, "qr-element.png"))
    result["qr_png"] = os.path.join(SHOTS, "qr-element.png")
    result["qr_px"] = d.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height]", qr)
    result["config"] = find("peer-config").get_attribute("value")
    result["download"] = find("peer-download").get_attribute("download")
    check_layout("members")
    shot("members-qr", scroll_to=find("peer-issued"))

    # The admin changes the endpoint new configs carry (PUT /api/v1/endpoint).
    until("the endpoint", lambda: find("endpoint-current").text.startswith("Phones dial "))
    result["endpoint_before"] = steady(lambda: find("endpoint-current").text)
    until("why phones may not reach it", lambda: find("endpoint-warning").text)
    result["endpoint_reason_before"] = steady(lambda: find("endpoint-warning").text)
    fill("endpoint-new", "vpn.example.org")
    click("endpoint-save")
    until("the new endpoint", lambda: "vpn.example.org:" in find("endpoint-current").text)
    result["endpoint_after"] = steady(lambda: find("endpoint-current").text)
    result["endpoint_reason_after"] = steady(lambda: find("endpoint-warning").text)
    # Fixed: the banner goes at once, without a reload.
    until("the banner to go", lambda: health_problems() == [])

    click("nav-audit")
    until("audit entries", lambda: all_of("audit-row"))
    result["audit_actions"] = [t.split("\n")[0] for t in texts("audit-row")]
    result["audit_texts"] = texts("audit-text")
    check_layout("audit")
    shot("audit")


def rotate():
    """The admin rotates vera's keys from the member list: a new QR and config, once."""
    go("#/members")
    row = '[data-testid="peer-row"][data-name="vera"] '
    until("vera online", lambda: d.find_element(By.CSS_SELECTOR, row + css("peer-state")).text == "online")
    shot("members")
    until("a click on Rotate", lambda: d.find_element(By.CSS_SELECTOR, row + css("peer-rotate")).click() or True)
    click("confirm-yes")
    until("the new QR", lambda: find("peer-qr") and "Rotated vera" in find("peer-issued").text)
    result["config"] = find("peer-config").get_attribute("value")


def viewer():
    go("#/jobs")
    who = d.find_element(By.ID, "who").text
    assert "You are vera (viewer)" in who, who
    until("the jobs", lambda: all_of("job-row"))
    result["jobs_seen"] = texts("job-row", "data-name")
    # Where a job posts is shown, its token is not (the API redacts it for viewers).
    result["viewer_jobs_text"] = d.find_element(By.TAG_NAME, "main").text
    controls = d.execute_script("return [...document.querySelectorAll('main button, main a.btn, main input, main select, main textarea')].map(e => e.textContent || e.id)")
    assert controls == [], "a viewer sees write controls: %s" % controls
    navs = [a.text for a in d.find_elements(By.CSS_SELECTOR, "nav a")]
    assert navs == ["Jobs", "Failures", "Handlers"], navs  # viewers read handlers too
    check_layout("viewer")
    shot("viewer")
    # Dark mode follows the phone's setting.
    d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    bg = d.execute_script("return getComputedStyle(document.body).backgroundColor")
    assert bg == "rgb(17, 17, 17)", "dark mode background is " + bg
    shot("viewer-dark")
    d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    # The job's own page: history, still read-only and without the webhook token.
    click("job-link")
    until("the job page", lambda: "#/job/" in d.current_url and all_of("job-row"))
    time.sleep(1)
    result["viewer_page_text"] = d.find_element(By.TAG_NAME, "body").text
    buttons = d.execute_script("return [...document.querySelectorAll('main button')].map(b => b.dataset.testid || b.textContent)")
    assert all(b in ("page-older", "page-newer") for b in buttons), buttons
    # The form routes are not offered, and the API refuses a crafted write anyway.
    d.get(BASE + "#/new")
    until("the jobs list instead of a form", lambda: all_of("job-row"))
    assert not all_of("job-save")
    job = {"name": "sneaky", "trigger": {"every": "1m"}, "action": {"webhook": {"url": "https://example.invalid/x"}}}
    result["crafted"] = {
        "create": fetch("POST", "/api/v1/jobs", job),
        "test": fetch("POST", "/api/v1/jobs/test", {"action": job["action"]}),
        "peer": fetch("POST", "/api/v1/peers", {"name": "mallory", "role": "admin"}),
    }


def row_of(kind, name):
    return '[data-testid="%s-row"][data-name="%s"] ' % (kind, name)


def in_row(kind, name, testid):
    return d.find_element(By.CSS_SELECTOR, row_of(kind, name) + css(testid))


def handlers():
    """The bot in the handler list; a job that calls it, built in the form and run now."""
    go("#/handlers")
    until("discord-bot online", lambda: in_row("handler", "discord-bot", "handler-state").text == "online")
    result["handler_methods"] = steady(lambda: in_row("handler", "discord-bot", "handler-methods").text)
    result["handler_tasks"] = steady(lambda: in_row("handler", "discord-bot", "handler-tasks").text)
    check_layout("handlers")
    shot("handlers")

    go("#/jobs")
    click("new-job")
    fill("job-name", "dice")
    Select(find("action-kind")).select_by_value("handler")
    until("the handler fields", lambda: find("handler-id").is_displayed() and not find("job-webhook-url").is_displayed())
    Select(find("handler-id")).select_by_value("discord-bot")
    result["handler_options"] = [o.text for o in Select(find("handler-id")).options]
    result["method_options"] = [o.get_attribute("value") for o in Select(find("handler-method")).options]
    Select(find("handler-method")).select_by_value("roll_dice")
    # Params are JSON: a typo is explained at the field, and nothing is stored.
    fill("handler-params", '{"sides": 20,}')
    click("job-save")
    result["bad_params_error"] = until("the params error at the field",
                                       lambda: d.find_element(By.ID, "err-handler-params").text)
    assert find("handler-params").get_attribute("aria-invalid") == "true"
    assert find("job-name").get_attribute("value") == "dice", "the form lost the name"
    status, text = fetch("GET", "/api/v1/jobs?name=dice")
    assert status == 200 and json.loads(text)["jobs"] == [], "a job was stored: " + text
    check_layout("handler job form")
    shot("job-form-handler", scroll_to=find("action-kind"))
    fill("handler-params", '{"sides": 20}')
    click("job-save")
    until("the dice job's page", lambda: "#/job/" in d.current_url and all_of("job-row"))
    result["dice_id"] = d.current_url.rsplit("/", 1)[1]
    result["dice_row"] = steady(lambda: find("job-row").text)
    # Run now: the call waits in the bot's queue, and the history says so.
    click("job-run")
    until("the manual run in the history", lambda: any(
        r.get_attribute("data-status") == "queued" and "run now" in r.text for r in all_of("run-row")))
    result["flash"] = d.find_element(By.ID, "msg").text


def manage():
    """History with a handler's answer and paging, audit paging, and member management."""
    ids = json.loads(ARG)
    # The bot acked the manual run: its handler and result show in the job's history.
    go("#/job/" + ids["dice"])
    result["handler_run"] = until("the handler's answer", lambda: next((r.text for r in all_of("run-row") if
                                  r.get_attribute("data-status") == "succeeded" and all_of("run-result")), None))
    # The job's card says how its last run went.
    result["dice_card"] = until("the card's last run", lambda: (lambda t: t if "Last: succeeded" in t else None)(find("job-row").text))
    shot("handler-run")

    # History paging: 20 runs a page, Older and Newer walk the pages of a busy job.
    go("#/job/" + ids["busy"])
    until("a full first page", lambda: len(all_of("run-row")) == 20)
    page1 = texts("run-row", "data-id")
    assert steady(lambda: find("page-newer").get_attribute("disabled")) is not None, "Newer on the first page"
    assert steady(lambda: find("page-older").get_attribute("disabled")) is None, "no Older with more than 20 runs"
    click("page-older")
    until("the second page", lambda: texts("run-row", "data-id") != page1)
    page2 = texts("run-row", "data-id")
    assert steady(lambda: find("page-newer").get_attribute("disabled")) is None, "no Newer on the second page"
    click("page-newer")
    until("the first page again", lambda: texts("run-row", "data-id") == page1)
    result["history_pages"] = [page1, page2]
    check_layout("job history")

    # Audit paging: 25 entries a page, newest first.
    click("nav-audit")
    until("a full audit page", lambda: len(all_of("audit-row")) == 25)
    audit1 = texts("audit-row", "data-seq")
    click("page-older")
    until("the older audit page", lambda: texts("audit-row", "data-seq") != audit1)
    audit2 = texts("audit-row", "data-seq")
    click("page-newer")
    until("the newest audit page again", lambda: texts("audit-row", "data-seq") == audit1)
    result["audit_pages"] = [audit1, audit2]

    # The last-admin guard is explained, and its controls are off.
    click("nav-members")
    until("the member list", lambda: all_of("peer-row") and len(all_of("peer-guard")) == 1)
    result["guard"] = until("the guard's text", lambda: in_row("peer", "leader", "peer-guard").text)
    # Read in one go, again if the 5 s poll re-rendered the list meanwhile.
    result["guard_disabled"] = until("the guard's controls", lambda: [
        in_row("peer", "leader", t).get_attribute("disabled") is not None
        for t in ("peer-row-role", "peer-toggle", "peer-remove")])
    check_layout("members with the guard")
    until("a screenshot of the guard", lambda: shot(
        "members-guard", scroll_to=d.find_element(By.CSS_SELECTOR, row_of("peer", "leader"))) or True)

    # Role change, disable and enable, on otto. Its row is far down the page: what the tap
    # did is said where the leader is looking (the message stays in view), not at the top.
    def role_to(r):
        until("a role menu for otto", lambda: Select(in_row("peer", "otto", "peer-row-role")).select_by_value(r) or True)
        until("otto is " + r, lambda: d.find_element(By.ID, "msg").text == "otto is now %s." % r and
              d.find_element(By.CSS_SELECTOR, row_of("peer", "otto")).text.find(r + " · ") >= 0)
        assert_in_view(d.find_element(By.ID, "msg"), "the answer to a role change")
    role_to("viewer")
    result["otto_roles"] = [until("otto's role menu", lambda: in_row("peer", "otto", "peer-row-role").get_attribute("value"))]
    until("a click on Disable", lambda: in_row("peer", "otto", "peer-toggle").click() or True)
    until("otto disabled", lambda: in_row("peer", "otto", "peer-state").text == "disabled" and
          in_row("peer", "otto", "peer-toggle").text == "Enable")
    assert_in_view(d.find_element(By.ID, "msg"), "the answer to Disable")
    assert d.find_element(By.ID, "msg").text == "otto is disabled.", d.find_element(By.ID, "msg").text
    result["otto_states"] = ["disabled"]
    until("a click on Enable", lambda: in_row("peer", "otto", "peer-toggle").click() or True)
    until("otto enabled", lambda: in_row("peer", "otto", "peer-state").text == "offline" and
          in_row("peer", "otto", "peer-toggle").text == "Disable")
    result["otto_states"].append("offline")
    # A second admin lifts the guard from leader.
    role_to("admin")
    result["otto_roles"].append("admin")
    until("the guard gone", lambda: not all_of("peer-guard") and
          in_row("peer", "leader", "peer-row-role").get_attribute("disabled") is None)


def degraded():
    go("#/jobs")
    problems = until("the damaged rows in the banner", lambda: health_problems())
    result["health"] = problems
    assert len(problems) == 1 and "damaged" in problems[0] and "appliance doctor" in problems[0], problems
    shot("health-damaged")
    # Tap targets: the job's name on the list, "<- Jobs" on its page.
    until("the job", lambda: all_of("job-link"))
    check_layout("jobs")
    result["link_heights"] = {"job-link": d.execute_script(
        "return document.querySelector('[data-testid=job-link]').getBoundingClientRect().height")}
    click("job-link")
    until("the job page", lambda: "#/job/" in d.current_url and all_of("job-row"))
    back = d.find_element(By.XPATH, "//a[normalize-space()='← Jobs']")
    result["link_heights"]["back"] = back.rect["height"]
    check_layout("job page")
    shot("job-page")
    # The banner is on every view.
    assert health_problems() == problems, health_problems()
    # A day of week spelled out is named at the field, in words, while typing.
    go("#/new")
    fill("job-schedule", "45 19 * * THURSDAY")
    err = until("the cron error at the field", lambda: d.find_element(By.ID, "err-job-schedule").text)
    result["cron_error"] = err
    shot("job-form-cron-error", scroll_to=find("job-schedule"))
    load_failure()


def load_failure():
    """A module that fails to load (here blocked, as a network change mid-load does) leaves no
    page stuck on "Loading…": the loader guard reloads once by itself, then says what happened,
    and its button loads the dashboard once the module is reachable again."""
    d.execute_cdp_cmd("Network.enable", {})
    d.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/assets/jobs.js"]})
    d.get("about:blank")  # a new load of the page, not a change of its #route
    d.get(BASE + "#/jobs")
    msg = until("the loader guard's message", lambda: d.find_element(By.CSS_SELECTOR, css("boot-failed")).text)
    result["load_failure"] = {
        "message": msg,
        # The guard reloaded once before it gave up: this page is that reload.
        "navigation": d.execute_script("return performance.getEntriesByType('navigation')[0].type"),
        "who": d.find_element(By.ID, "who").text,
    }
    check_layout("load failure")
    shot("load-failure")
    d.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    click("boot-retry")
    until("the header after trying again", lambda: "You are" in d.find_element(By.ID, "who").text)
    until("the jobs list after trying again", lambda: all_of("job-link"))
    result["load_failure"]["recovered"] = True


def no_policy_violations():
    """The page runs entirely within its Content-Security-Policy."""
    refused = [e["message"] for e in d.get_log("browser")
               if "Content Security Policy" in e["message"] or "Refused to" in e["message"]]
    assert not refused, "CSP violations: %s" % refused


try:
    {"leader": leader, "viewer": viewer, "rotate": rotate, "handlers": handlers, "manage": manage,
     "degraded": degraded}[PHASE]()
    no_policy_violations()
    result["ok"] = True
except Exception as e:  # noqa: BLE001 - report any failure with a screenshot
    result["ok"] = False
    result["error"] = "%s: %s" % (type(e).__name__, str(e).split("Stacktrace:")[0])
    result["trace"] = traceback.format_exc().split("Stacktrace:")[0]
    try:
        d.save_screenshot(os.path.join(SHOTS, "failure-%s.png" % PHASE))
        result["failure_page"] = d.find_element(By.TAG_NAME, "body").text
        result["console"] = d.get_log("browser") if hasattr(d, "get_log") else []
    except Exception:  # noqa: BLE001
        pass
finally:
    with open(OUT, "w") as f:
        json.dump(result, f, indent=1)
    d.quit()
    shutil.rmtree(profile, ignore_errors=True)
if not result["ok"]:
    log(result.get("trace") or result["error"])
    sys.exit(1)
