"""report.html in a real headless browser (Debian's chromium, offline): every chart decodes and
shows, and the page of a three-host run reads like a page in a 1300-px window: no table runs off
the right edge, times are seconds since the run started. The page itself has no script; the
test adds a probe to a copy of it, and also judges the screenshot's pixels, which need none.

``REPORT_SCREENSHOT=path.png`` keeps the screenshot of the three-host page (docs/img/ has one).
"""

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
    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
)  # fmt: skip
WIDTH = 1300
PROBE = """<script>window.addEventListener('load', () => {
  const state = [...document.images].map(i => i.complete && i.naturalWidth > 0 ? 'ok' : 'broken');
  document.body.setAttribute('data-images', state.join(','));
  const boxes = [...document.querySelectorAll('.box')].filter(b => b.scrollWidth > b.clientWidth);
  const root = document.documentElement;
  document.body.setAttribute('data-width',
    [window.innerWidth, root.scrollWidth, boxes.length, root.scrollHeight].join(','));
});</script></body>"""
START = 1_796_279_600_000  # the run's start, epoch ms

needs_browser = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="no chromium (CI installs it: .ci/run); apt-get install chromium",
)


def _chart(path, colour: str, width: float = 3.0):
    fig = new_figure(width, 2.0)
    fig.add_subplot().plot([0, 1, 2], [0, 2, 1], color=colour)
    fig.savefig(path)
    return path


def _summary(**changes) -> RunSummary:
    base = dict(
        run_id="f" * 32, run_name="r", experiment_id="0", entry_point="main", status="RUNNING",
        seconds=61.0, metrics={"accuracy": 0.9}, look=where_to_look("sqlite:///m.db", "0", "f"),
        started_ms=START,
    )  # fmt: skip
    return RunSummary(**{**base, **changes})


@needs_browser
def test_report_renders_offline_with_every_chart(tmp_path):
    assert CHROMIUM, "CI must have chromium (.ci/run installs it)"
    charts = [
        ("evaluation/roc_curve.png", _chart(tmp_path / "a.png", "tab:blue")),
        ("spark/timeline.png", _chart(tmp_path / "b.png", "tab:red")),
    ]
    stages = tmp_path / "stages.csv"
    stages.write_text("stage_id,tasks\n1,4\n")
    page = render(_summary(), {"regParam": "0.1"}, charts, {"spark/stages.csv": stages})
    probed = tmp_path / "report.html"
    probed.write_text(page.replace("</body>", PROBE, 1), encoding="utf-8")

    dom = _dump_dom(probed, tmp_path / "profile")
    assert _probed(dom, "data-images") == ["ok", "ok"]
    assert "<h2>Stages</h2>" in dom

    # The probe can tell: a cut image data URI shows as broken.
    cut = re.sub(r'base64,([^"]{40})[^"]*"', r'base64,\1"', page, count=1)
    broken = tmp_path / "broken.html"
    broken.write_text(cut.replace("</body>", PROBE, 1), encoding="utf-8")
    assert _probed(_dump_dom(broken, tmp_path / "profile2"), "data-images") == ["broken", "ok"]


def _cluster_run(tmp_path) -> dict:
    """The tables of a three-host run whose stage names are long call sites, whose times are
    epoch ms, with a lost executor, a host on another numpy and a stack trace for a reason."""
    t = lambda s: START + int(s * 1000)  # noqa: E731
    site = "/home/someone/projects/a-rather-long-project-name/src/pipelines/training/step.py"
    stages = ["stage_id,stage_attempt,job_id,name,tasks,failed_tasks,executors,first_launch_time,"
              "last_finish_time,executor_run_time_ms_total,executor_cpu_time_ms_total,"
              "jvm_gc_time_ms_total,shuffle_read_bytes_total,shuffle_read_records_total,"
              "shuffle_write_bytes_total,shuffle_write_records_total,input_bytes_total,"
              "input_records_total,output_bytes_total,memory_bytes_spilled_total,"
              "disk_bytes_spilled_total,duration_min_ms,duration_p50_ms,duration_p75_ms,"
              "duration_p95_ms,duration_max_ms,task_skew,stage_duration_ms"]  # fmt: skip
    for i in range(14):
        name = f"treeAggregate at {site}:{100 + i}" if i % 2 else f"collect at {site}:{90 + i}"
        stages.append(
            f"{i},{i % 3 == 2:d},{i // 2},{name},96,{i % 5 == 0:d},6,{t(4.43 + 3 * i)},"
            f"{t(6.9 + 3 * i)},{41230 + i},{38110.5},{820},{10485760 * i},{1000 * i},"
            f"{10485760 * i},{1000 * i},{402653184},{569000},{0},{0},{0},"
            f"{12},{387.0},{420},{655},{1058.0},{2.73},{2467}"
        )
    trace = "org.apache.spark.SparkException: Python worker exited unexpectedly (crashed) " + (
        "at org.apache.spark.api.python.BasePythonRunner$ReaderIterator$$anonfun$1."
        "applyOrElse(PythonRunner.scala:612) " * 6
    )
    task_head = ("job_id,stage_id,stage_attempt,task_id,partition_id,attempt,executor_id,host,"
                 "launch_time,finish_time,duration_ms,jvm_gc_time_ms,input_bytes,"
                 "shuffle_read_bytes,status,failure_reason")  # fmt: skip
    failures = [task_head, f'3,6,0,611,11,0,2,198.51.100.12,{t(22.4)},{t(31.1)},8700,120,'
                f'33554432,0,FAILED,"{trace}"']  # fmt: skip
    stragglers = [task_head + ",stage_median_ms,ratio_to_median"] + [
        f"2,{s},0,{500 + s},{s},0,2,198.51.100.12,{t(10 + s)},{t(12.5 + s)},2500,310,"
        f"4194304,1048576,SUCCESS,,1020,2.45"
        for s in range(4)
    ]
    hosts = ["host,executors,tasks,failed_tasks,run_time_ms,cpu_time_ms,gc_time_ms,"
             "shuffle_read_bytes,shuffle_write_bytes,input_bytes,lost_executors,slowness"] + [
        f"198.51.100.1{h},2,{312 - 30 * h},{h == 2:d},{41230 * (2.3 if h == 2 else 1):.0f},"
        f"38110.5,820,10485760,10485760,402653184,{h == 2:d},{2.31 if h == 2 else 1.02}"
        for h in (1, 2, 3)
    ]  # fmt: skip
    fields = ("role,executor_id,host,python,pyspark,numpy,pandas,pyarrow,java,os,cpu_model,"
              "blas_netlib,pyspark_python,canary")  # fmt: skip
    env = [fields] + [
        f"{'driver' if e == 'driver' else 'executor'},{e},198.51.100.{h},3.11.7,4.3.0,"
        f"{'1.26.4' if h == 12 else '2.3.5'},2.3.3,21.0.0,17.0.13,Debian GNU/Linux 12 (bookworm),"
        f"Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz,Java,"
        f"/opt/venvs/{'numpy126' if h == 12 else 'main'}/bin/python,"
        + ("9b27e0d4c1a85f36" if h == 12 else "3f6a1c2b9d0e4f57") * 4
        for e, h in (("driver", 1), ("0", 11), ("1", 11), ("2", 12), ("3", 12), ("4", 13))
    ]  # fmt: skip
    lost = ["executor_id,host,lost_at_s,reason,failed_tasks,rerun_tasks,failed_time_ms,"
            "rerun_time_ms,cost_ms",
            '2,198.51.100.12,31.1,"Command exited with code 137",2,6,1500,8300,9800']  # fmt: skip
    tables = {}
    named = {"stages": stages, "failures": failures, "stragglers": stragglers, "hosts": hosts,
             "environment": env, "lost_executors": lost}  # fmt: skip
    for name, lines in named.items():
        (tmp_path / f"{name}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        tables[f"spark/{name}.csv"] = tmp_path / f"{name}.csv"
    return tables


@needs_browser
def test_a_cluster_run_reads_as_a_page_at_1300_px(tmp_path):
    assert CHROMIUM, "CI must have chromium (.ci/run installs it)"
    summary = _summary(
        spark={"tasks": 1344.0, "stages": 14.0, "hosts": 3.0, "executors": 5.0},
        slow_hosts="198.51.100.12 (2.3x, in 4 of the last 5 runs)",
        environment="numeric: numpy 1.26.4 on 198.51.100.12 (driver 2.3.5); canary differs on "
        "198.51.100.12", environment_grade="numeric",
        lost_executors="executor 2 on 198.51.100.12 lost at 31.1 s: Command exited with code 137;"
        " 6 tasks re-run, +9.8 s",
    )  # fmt: skip
    charts = [("spark/timeline.png", _chart(tmp_path / "t.png", "tab:green", width=10))]
    page = render(summary, {"regParam": "0.1"}, charts, _cluster_run(tmp_path))
    probed = tmp_path / "report.html"
    probed.write_text(page.replace("</body>", PROBE, 1), encoding="utf-8")

    dom = _dump_dom(probed, tmp_path / "profile")
    inner, scroll, scrolled_boxes, height = map(int, _probed(dom, "data-width"))
    assert (inner, scroll, scrolled_boxes) == (WIDTH, WIDTH, 0)  # nothing wider than the window
    # Times are seconds since the run started: no epoch milliseconds anywhere on the page.
    assert not re.search(r"\b1\d{12}\b", re.sub(r"<[^>]*>", " ", dom))
    stages = re.search(r"<h2>Stages</h2>.*?</table>", dom, re.S).group(0)
    assert '<td class="n">4.43</td>' in stages  # the first stage's start (s)
    assert ">treeAggregate at step.py:101<" in stages  # short; the full call site on hover
    assert "/home/someone" not in re.sub(r'title="[^"]*"', "", stages)
    assert "31.1" in re.search(r"<h2>Lost executors</h2>.*?</table>", dom, re.S).group(0)

    shot = _screenshot(probed, tmp_path / "report.png", tmp_path / "profile3", height + 40)
    assert _rightmost_ink(shot) < WIDTH - 16, "a table runs into the right margin"
    if os.environ.get("REPORT_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["REPORT_SCREENSHOT"])

    # The checks can fail: one unbreakable line wider than the window is caught by both.
    wide = page.replace("</body>", f"<table><tr><td>{'x' * 400}</td></tr></table></body>", 1)
    control = tmp_path / "wide.html"
    control.write_text(wide.replace("</body>", PROBE, 1), encoding="utf-8")
    inner, scroll, _, height = map(int, _probed(_dump_dom(control, tmp_path / "p4"), "data-width"))
    assert scroll > inner
    wide_shot = _screenshot(control, tmp_path / "wide.png", tmp_path / "p5", height + 40)
    assert _rightmost_ink(wide_shot) >= WIDTH - 2


def _dump_dom(page, profile) -> str:
    out = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--window-size={WIDTH},900",
         "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def _screenshot(page, png, profile, height: int):
    """The whole page (``height``: its scroll height) in a window ``WIDTH`` px wide."""
    out = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--window-size={WIDTH},{height}",
         "--virtual-time-budget=5000", f"--screenshot={png}", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0 and png.exists(), out.stderr[-2000:]
    return png


def _rightmost_ink(png) -> int:
    """The rightmost pixel column that is not the page's white background."""
    from PIL import Image

    image = Image.open(png).convert("L")
    assert image.size[0] == WIDTH
    ink = image.point(lambda v: 255 if v < 250 else 0).getbbox()  # box of the non-white pixels
    assert ink, "a blank screenshot"
    return ink[2] - 1


def _probed(dom: str, attribute: str) -> list[str]:
    found = re.search(rf'{attribute}="([^"]*)"', dom)
    assert found, dom[:2000]
    return found.group(1).split(",")
