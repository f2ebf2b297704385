"""Screenshots of ``mim report --html`` for the README, taken by headless Chromium (Debian's ``chromium``).

Run from the repository root: ``python docs/make_screenshots.py``. Writes

* ``docs/report-demo.png``: the overview of the demo's report (``MIM_STATE=… mim demo`` then
  ``MIM_STATE=… mim report --html``), exactly as a new user gets it;
* ``docs/report-six-months.png``: the overview of six months of incidents run through the sync cycle
  (``tests/report_story.py``), where the trends show.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connector.job.store import StateStore  # noqa: E402
from connector.tools.report import collect, render_html  # noqa: E402
from tests.browser import Browser  # noqa: E402
from tests.report_story import PROCESS, run_story  # noqa: E402

WIDTH = 1100


def overview_png(browser: Browser, page_path: Path, out: Path) -> None:
    """The page from its top to the end of the overview, ``WIDTH`` pixels wide."""
    page = browser.open(page_path.resolve().as_uri(), width=WIDTH, height=1200)
    if page.errors:
        raise SystemExit(f"{page_path}: console errors {page.errors}")
    bottom = page.evaluate("Math.ceil(document.querySelector('section.overview').getBoundingClientRect().bottom)")
    page.send("Emulation.setDeviceMetricsOverride", width=WIDTH, height=int(bottom) + 20, deviceScaleFactor=1,
              mobile=False)
    shot = page.send("Page.captureScreenshot", format="png",
                     clip={"x": 0, "y": 0, "width": WIDTH, "height": int(bottom) + 20, "scale": 1})
    out.write_bytes(base64.b64decode(shot["data"]))
    print(f"wrote {out.relative_to(ROOT)} ({WIDTH}x{int(bottom) + 20})")


def mim(*args: str, state: Path) -> None:
    """``MIM_STATE=<name> mim …`` in the state's folder, no other setting (the page names the state as given)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIM_")}
    env["MIM_STATE"] = state.name
    subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], env=env, cwd=state.parent, check=True,
                   stdout=subprocess.DEVNULL)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mim-shots-") as work, Browser.start() as browser:
        folder = Path(work)
        demo = folder / "demo.sqlite"
        mim("demo", state=demo)
        mim("report", "--html", "demo.html", state=demo)
        overview_png(browser, folder / "demo.html", ROOT / "docs" / "report-demo.png")
        story = run_story(folder / "story.sqlite")
        # made as of the story's own end (June 30th), so the incident still open there is costed to that day
        with StateStore(story.path, "servicenow") as store:
            data = collect(store, PROCESS, story.now, state="story.sqlite")
        (folder / "story.html").write_text(render_html(data, story.now), encoding="utf-8")
        overview_png(browser, folder / "story.html", ROOT / "docs" / "report-six-months.png")


if __name__ == "__main__":
    main()
