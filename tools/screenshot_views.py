"""Screenshots of the runs table's saved views, as a user sees them at 1,400 px.

    python tools/screenshot_views.py http://127.0.0.1:5000 docs/img/view- models candidates-<id> evaluations

Needs a running ``mlflow ui`` on that address, ``pip install playwright`` and a Chromium
(``/usr/bin/chromium``, the Debian package). Experiment 1 is shown. The MLflow Assistant
panel is closed first, as a user closes it, so that the table gets the width. Dev tool
only: not a dependency of the package.
"""
import sys

from playwright.sync_api import sync_playwright

base, out_prefix, views = sys.argv[1], sys.argv[2], sys.argv[3:]
with sync_playwright() as p:
    b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
    page = b.new_page(viewport={"width": 1400, "height": 700})
    for i, v in enumerate(views):
        page.goto(f"{base}/#/experiments/1/runs?workflowType=machine_learning&viewStateShareKey={v}")
        page.wait_for_timeout(5000)
        close = page.get_by_role("button", name="Close")
        if close.count():
            close.first.click()
            page.wait_for_timeout(1500)
        page.screenshot(path=f"{out_prefix}{v}.png")
        print("shot", v)
    b.close()
