"""report.html in headless Chromium: it renders, every figure loads (naturalWidth > 0), no console errors.

Skips only where Chromium is absent AND the CI variable is unset; in CI a missing Chromium fails.
A screenshot is kept under the pytest tmp dir and copied to results/test-artifacts/.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from analysis.build import build_context, write_report
from analysis.load import load_sweep
from analysis.synthetic import go_spec, write_sweep

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "results" / "test-artifacts"
# Flags from the machine notes: without the background-networking ones Chromium tries to reach
# Google's hosts at every start on a closed network.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
PROBE = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => ({alt: i.alt, w: i.naturalWidth, done: i.complete}));
  document.body.setAttribute('data-probe', JSON.stringify(imgs));
});</script>"""


def chromium() -> str:
    exe = next(
        (p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None
    )
    if exe is None:
        # The report's browser test is part of the suite, not optional: `make test` installs
        # chromium (scripts/ensure_chromium.sh) before running pytest.
        pytest.fail("chromium is not installed: run scripts/ensure_chromium.sh (or `make test`, which does)")
    return exe


def render(exe: str, html: Path, tmp: Path, extra: list[str]) -> subprocess.CompletedProcess[str]:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run(
        [exe, *FLAGS, f"--user-data-dir={profile}", *extra, html.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
    )


def probe(exe: str, html: Path, tmp: Path) -> tuple[list[dict], list[str], str]:
    probed = tmp / f"probed-{html.parent.name}-{html.name}"
    probed.write_text(html.read_text().replace("</body>", PROBE + "</body>"))
    proc = render(exe, probed, tmp, ["--enable-logging=stderr", "--v=0", "--dump-dom"])
    m = re.search(r'data-probe="([^"]*)"', proc.stdout)
    assert m, f"the page did not finish loading: {proc.stderr[-2000:]}"
    images = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return images, console, proc.stdout


def test_the_probe_catches_broken_images_and_console_errors(tmp_path: Path) -> None:
    exe = chromium()
    page = tmp_path / "control.html"
    page.write_text(
        "<html><body><img alt=broken src='missing.png'><script>console.error('control-error')</script>"
        "</body></html>"
    )
    images, console, _ = probe(exe, page, tmp_path)
    assert images == [{"alt": "broken", "w": 0, "done": True}]
    assert any("control-error" in line for line in console)


@pytest.mark.parametrize("kind", ["go", "cpu"])
def test_report_renders_with_every_figure_and_no_console_errors(tmp_path: Path, cfg, kind: str) -> None:
    exe = chromium()
    spec = go_spec() if kind == "go" else go_spec(mem_measurable=False, scale="smoke")
    sweep = load_sweep(write_sweep(tmp_path / kind, spec))
    out = write_report(build_context(sweep, cfg), sweep.sweep_dir / "report")
    html = out / "report.html"
    n_figures = len(list((out / "figures").glob("*.png")))

    images, console, dom = probe(exe, html, tmp_path)
    assert len(images) == n_figures == 7
    assert all(i["done"] and i["w"] > 0 for i in images), images
    assert console == []
    assert ("VERDICT: GO" if kind == "go" else "SMOKE SCALE") in dom
    if kind == "cpu":
        assert "not measurable on CPU" in dom

    shot = tmp_path / f"report-{kind}.png"
    proc = render(exe, html, tmp_path, ["--window-size=1280,4000", f"--screenshot={shot}"])
    assert shot.exists() and shot.stat().st_size > 20_000, proc.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / f"analysis-report-{kind}.png")
