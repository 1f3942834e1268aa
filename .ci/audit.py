"""`make audit`: known vulnerabilities in the pinned dependencies (constraints.txt), by pip-audit.

Fails when a pinned version has a known vulnerability. Says plainly, and does not fail, when the
vulnerability service (PyPI's JSON API) cannot be reached, and lists the pins it does not know
(a registry mirror may carry versions PyPI has not published), so an empty report is never
mistaken for a clean one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNREACHABLE = ("ConnectionError", "Max retries exceeded", "NameResolutionError", "timed out",
               "ProxyError", "SSLError")


def main() -> int:
    run = subprocess.run(
        [sys.executable, "-m", "pip_audit", "--requirement", str(ROOT / "constraints.txt"),
         "--no-deps", "--disable-pip", "--progress-spinner", "off", "--format", "json",
         "--timeout", "20"], capture_output=True, text=True, timeout=900)
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        if any(marker in run.stderr for marker in UNREACHABLE):
            print("pip-audit: the vulnerability service (PyPI) cannot be reached from here; "
                  "NOTHING WAS AUDITED. Run `make audit` where pypi.org answers.")
            return 0
        print(run.stderr[-3000:], file=sys.stderr)
        return run.returncode or 1
    dependencies = report.get("dependencies", [])
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    audited = len(dependencies) - len(skipped)
    for dependency in vulnerable:
        for vuln in dependency["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions", [])) or "no fixed version yet"
            print(f"VULNERABLE {dependency['name']}=={dependency['version']}: {vuln['id']} "
                  f"(fixed in {fixes})")
    print(f"pip-audit: {audited} of {len(dependencies)} pinned packages audited against PyPI's "
          f"vulnerability data, {sum(len(d['vulns']) for d in vulnerable)} known "
          f"vulnerabilities.")
    if skipped:
        print(f"Not audited ({len(skipped)}; the service does not know these versions): "
              + ", ".join(d["skip_reason"].rsplit(": ", 1)[-1] for d in skipped))
    if not audited:
        print("pip-audit: NOTHING WAS AUDITED: no pinned version is known to the service (a "
              "registry mirror may carry versions PyPI has not published).")
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main())
