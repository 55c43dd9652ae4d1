"""Read pip-audit's JSON report for `./dev test`: fail on a known advisory, and say plainly when
nothing could be audited (pip-audit alone reports "No known vulnerabilities found" then).

usage: dependency_audit.py REPORT.json PIP_AUDIT.log
"""

import json
import sys

report, log = sys.argv[1], sys.argv[2]
try:
    with open(report, encoding="utf-8") as file:
        dependencies = json.load(file)["dependencies"]
except (OSError, ValueError, KeyError, TypeError) as exc:
    print(f"dev: dependency audit NOT DONE: pip-audit gave no report ({exc}; its output is in "
          f"{log}); not failing the build for that", file=sys.stderr)
    sys.exit(0)
audited = [d for d in dependencies if "skip_reason" not in d]
skipped = [d for d in dependencies if "skip_reason" in d]
found = [(d, v) for d in audited for v in d.get("vulns", ())]
for dependency, vuln in found:
    fixed = ", ".join(vuln.get("fix_versions") or ()) or "no fixed release yet"
    ids = " / ".join([vuln["id"], *vuln.get("aliases", ())])
    print(f"dev: {dependency['name']} {dependency['version']}: {ids} (fixed in {fixed})",
          file=sys.stderr)
if found:
    print(f"dev: dependency audit FAILED: {len(found)} known advisories in the installed "
          "packages; raise the floors in pyproject.toml", file=sys.stderr)
    sys.exit(1)
if not audited:
    reason = skipped[0]["skip_reason"] if skipped else "no packages listed"
    print(f"dev: dependency audit NOT DONE: pip-audit could get advisory data for none of the "
          f"{len(dependencies)} installed packages (first reason: {reason}); is PyPI's JSON API "
          "reachable from here? Not failing the build for that", file=sys.stderr)
    sys.exit(0)
names = ", ".join(d["name"] for d in skipped)
print(f"dev: dependency audit: no known advisories in {len(audited)} installed packages"
      + (f" ({len(skipped)} not audited: {names})" if skipped else ""), file=sys.stderr)
