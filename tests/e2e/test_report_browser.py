"""report.html in a real headless browser (Debian's chromium, offline): every chart decodes
and shows. The page itself has no script; the test adds a probe to a copy of it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from sparkml_template.contract.figures import new_figure
from sparkml_template.observability.report import render
from sparkml_template.observability.summary import RunSummary, where_to_look

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
)  # fmt: skip
PROBE = """<script>window.addEventListener('load', () => {
  const state = [...document.images].map(i => i.complete && i.naturalWidth > 0 ? 'ok' : 'broken');
  document.body.setAttribute('data-images', state.join(','));
});</script></body>"""

needs_browser = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="no chromium (CI installs it: .ci/run); apt-get install chromium",
)


def _chart(path, colour: str):
    fig = new_figure(3.0, 2.0)
    fig.add_subplot().plot([0, 1, 2], [0, 2, 1], color=colour)
    fig.savefig(path)
    return path


@needs_browser
def test_report_renders_offline_with_every_chart(tmp_path):
    assert CHROMIUM, "CI must have chromium (.ci/run installs it)"
    charts = [
        ("evaluation/roc_curve.png", _chart(tmp_path / "a.png", "tab:blue")),
        ("spark/timeline.png", _chart(tmp_path / "b.png", "tab:red")),
    ]
    stages = tmp_path / "stages.csv"
    stages.write_text("stage_id,tasks\n1,4\n")
    summary = RunSummary(
        run_id="f" * 32, run_name="r", experiment_id="0", entry_point="main", status="RUNNING",
        seconds=1.0, metrics={"accuracy": 0.9}, look=where_to_look("sqlite:///m.db", "0", "f"),
    )  # fmt: skip
    page = render(summary, {"regParam": "0.1"}, charts, {"spark/stages.csv": stages})
    probed = tmp_path / "report.html"
    probed.write_text(page.replace("</body>", PROBE, 1), encoding="utf-8")

    dom = _dump_dom(probed, tmp_path / "profile")
    assert _image_states(dom) == ["ok", "ok"]
    assert "<h2>Stages</h2>" in dom

    # The probe can tell: a cut image data URI shows as broken.
    cut = re.sub(r'base64,([^"]{40})[^"]*"', r'base64,\1"', page, count=1)
    broken = tmp_path / "broken.html"
    broken.write_text(cut.replace("</body>", PROBE, 1), encoding="utf-8")
    assert _image_states(_dump_dom(broken, tmp_path / "profile2")) == ["broken", "ok"]


def _dump_dom(page, profile) -> str:
    out = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}",
         "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def _image_states(dom: str) -> list[str]:
    found = re.search(r'data-images="([^"]*)"', dom)
    assert found, dom[:2000]
    return found.group(1).split(",")
