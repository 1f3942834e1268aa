"""`gateway replay`'s words: the report as a person reads it on a terminal, and the verdict of
`--min-agreement` with its reason (also in `--json`, so a CI log says why a gate failed)."""

from __future__ import annotations

import math
from typing import Any


def verdict(report: dict[str, Any], min_agreement: float | None) -> tuple[bool, str | None]:
    """Passed, and why not. Without `--min-agreement` every replay passes (exit codes as they
    were); with it, a replay with no row replayed fails whatever the bar (nothing shows the
    version agrees), and rows that failed or were redacted count against agreement."""
    if min_agreement is None:
        return True, None
    lost = _lost(report)
    if not report["rows"]:
        return False, (f"no row was replayed{lost}, so nothing shows version "
                       f"{report['version']} agrees: --min-agreement {min_agreement:.4%} fails")
    if report["agreement"] < min_agreement:
        return False, (f"agreement {report['agreement']:.4%} is below --min-agreement "
                       f"{min_agreement:.4%}{lost}")
    return True, None


def _lost(report: dict[str, Any]) -> str:
    """`(of N captured rows, R were redacted and F failed)`, or nothing when none was lost."""
    redacted, failed = report["redacted_rows"], report["failed_rows"]
    if not redacted and not failed:
        return ""
    captured = report["rows"] + redacted + failed
    return f" (of {captured} captured rows, {redacted} were redacted and {failed} failed)"


def table(report: dict[str, Any]) -> str:
    """The report for a terminal: totals, what could not be replayed and why, then one row per
    served version."""
    agreement = _percent(report["agreement"])
    lost = report["redacted_rows"] + report["failed_rows"]
    if lost:
        agreement += f" of {report['rows'] + lost} captured rows ({lost} not replayed)"
    lines = [f"{report['model']}: {report['rows']} rows replayed on version {report['version']}"
             f" ({report['target']}); agreement {agreement}",
             f"  {report['files']} files, {report['lines']} lines, {report['corrupt_lines']} "
             f"unreadable, {report['redacted_requests']} redacted and "
             f"{report['failed_requests']} failed requests, {report['feedback_rows']} labels"]
    if report["redacted_requests"]:
        names = ", ".join(repr(name) for name in report["redacted_inputs"])
        lines.append(f"  {report['redacted_requests']} requests ({report['redacted_rows']} rows)"
                     f" cannot be replayed: their inputs were redacted when captured ({names};"
                     " capture.redact in gateway.yaml). Their rows count as not agreeing.")
    if report["failed_requests"]:
        lines.append(f"  {report['failed_requests']} requests ({report['failed_rows']} rows) "
                     f"failed on version {report['version']}. Their rows count as not "
                     "agreeing.")
    lines += [f"  failed: {why}" for why in report["failures"]]
    if report["missing_files"]:
        lines.append(f"  {report['missing_files']} capture files were deleted (capture "
                     "retention) before they could be read")
    v = report["version"]
    rows = [["served", "requests", "rows", "not replayed", "agreement", "labelled",
             "served version", f"version {v}", f"v{v} p50 ms", f"v{v} p99 ms"]]
    for r in report["served_versions"]:
        rows.append([str(r["version"]), str(r["requests"]), str(r["rows"]),
                     str(r["failed_rows"] + r["redacted_rows"]), _percent(r["agreement"]),
                     str(r["labelled_rows"]), _shown(r["measure"], r["served"]),
                     _shown(r["measure"], r["replayed"]), _ms(r["latency_ms"]["p50"]),
                     _ms(r["latency_ms"]["p99"])])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
              for row in rows]
    return "\n".join(lines)


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4%}"


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def _shown(measure: str | None, estimate: dict[str, float] | None) -> str:
    if measure is None or estimate is None:
        return "-"
    return (f"{measure} {estimate['value']:.4g} "
            f"[{estimate['low']:.3g}, {estimate['high']:.3g}]")
