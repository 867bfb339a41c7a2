#!/usr/bin/env python3
"""The statistics reference of docs/statistics.md ("Reference: every statistic").

Runs a representative set of scenarios (every VM type and attribute store, TDX with 2 MiB
pages, the ACCEPT/REMOVE race, TD teardown and HKID reuse, attacks with violations), collects
every statistic from their stats.csv, folds instance names into patterns (VM names -> <vm>,
cpuN -> cpu<N>, TDX leaves -> <leaf>, statuses -> <STATUS>, PAMT page types -> <TYPE>,
invariant ids -> <ID>) and writes one table row per pattern between the
<!-- BEGIN STATS --> / <!-- END STATS --> markers.

Usage: stats-doc.py [--check] CVMSIM DOC
  without --check: rewrite the block of DOC (called by scripts/regen-docs-fields.sh);
  with --check:    fail, naming each statistic, if an emitted statistic is missing from DOC's
                   table or the block is out of date (a ctest entry).
Run from the repository root (scenario paths are relative to it).
"""
import csv
import os
import re
import subprocess
import sys
import tempfile

# (scenario, extra cvmsim arguments). Explore-free: plain `cvmsim run`s, deterministic.
SCENARIOS = [
    ("scenarios/quickstart.json", []),
    ("scenarios/kvm/convert_both_ways.json", []),
    ("scenarios/kvm/convert_both_ways.json", ["--set", "platform.kvm.attr_store=range"]),
    ("scenarios/kvm/bind_other_vms_gmem.json", []),
    ("scenarios/kvm/gmem_mmap.json", []),
    ("scenarios/kvm/delete_memslot_under_vcpu.json", []),
    ("scenarios/kvm/private_access_no_gmem.json", []),
    ("scenarios/tutorial/close_gmem_race.json", []),
    ("scenarios/tdx/measured_build.json", []),
    ("scenarios/tdx/huge_private_2m.json", []),
    ("scenarios/tdx/convert_2m.json", []),
    ("scenarios/tdx/race_accept_remove.json", []),
    ("scenarios/tdx/lazy_accept_workload.json", []),
    ("scenarios/tdx/teardown_reuse.json", []),
    ("scenarios/tdx/bounce_buffer_io.json", []),
    ("scenarios/tdx/host_kernel_shared.json", []),
    ("scenarios/attacks/hkid_reuse_unsafe.json", []),
    ("scenarios/attacks/rebind_gmem_unsafe_no_scrub.json", []),
    ("scenarios/attacks/tlb_flush_skipped_unsafe.json", []),
    ("scenarios/attacks/hostile_double_map.json", []),
    ("scenarios/attacks/tdx_host_write_poison.json", []),
]

PLATFORM_GROUPS = {"memory", "router", "host", "kvm", "tdx"}
TDX_NOT_LEAVES = {"glue", "pamt", "status"}
LEAF_COUNTERS = {"calls", "errors", "busy", "cycles"}


def normalise(name, desc):
    """(pattern, description, (placeholder, instance, note) or None)."""
    parts = name.split(".")
    if len(parts) > 2 and parts[0] == "platform" and parts[1] not in PLATFORM_GROUPS:
        parts[1] = "<vm>"
    parts = ["cpu<N>" if re.fullmatch(r"cpu\d+", p) else p for p in parts]
    name = ".".join(parts)
    m = re.fullmatch(r"platform\.tdx\.([a-z0-9_]+)\.([a-z]+)", name)
    if m and m.group(1) not in TDX_NOT_LEAVES and m.group(2) in LEAF_COUNTERS:
        mnemonic, _, rest = desc.partition(" ")
        return ("platform.tdx.<leaf>.%s" % m.group(2), "`<leaf>` " + rest,
                ("<leaf>", m.group(1), mnemonic))
    for prefix, placeholder in (("platform.tdx.status.", "<STATUS>"),
                                ("platform.tdx.pamt.pages.", "<TYPE>")):
        if name.startswith(prefix):
            inst = name[len(prefix):]
            if inst in desc:  # TDX_UNKNOWN_STATUS has a description of its own
                return (prefix + placeholder, desc.replace(inst, "`%s`" % placeholder),
                        (placeholder, inst, None))
    m = re.fullmatch(r"invariants\.violations_(.+)", name)
    if m:
        inst = m.group(1)
        head = desc.split(":", 1)[0].replace(inst, "`<ID>`")
        return ("invariants.violations_<ID>",
                head + " (the invariant's statement is the description of its own row in "
                "stats.csv; docs/invariants.md)", ("<ID>", inst, None))
    return name, desc, None


def collect(cvmsim):
    rows = {}      # (section, pattern) -> {(unit, desc): None}, first-seen order
    instances = {}  # placeholder -> {instance: note}
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (scn, extra) in enumerate(SCENARIOS):
            out = os.path.join(tmp, str(i))
            r = subprocess.run([cvmsim, "run", scn, "-q", "--out", out] + extra,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if r.returncode != 0 or not os.path.exists(os.path.join(out, "stats.csv")):
                sys.exit("stats-doc: `cvmsim run %s %s` failed (exit %d): %s"
                         % (scn, " ".join(extra), r.returncode, r.stderr.strip()))
            with open(os.path.join(out, "stats.csv"), newline="") as f:
                for row in csv.DictReader(f):
                    name, unit, desc = row["name"], row["unit"].strip(), row["description"].strip()
                    if (not unit or not desc) and not any(p.startswith(name + " ") for p in problems):
                        problems.append("%s (from %s) has an empty %s: give it one in its "
                                        "model's describe_stats" % (name, scn,
                                                                    "unit" if not unit else "description"))
                    pat, pdesc, inst = normalise(name, desc)
                    if extra and (unit, pdesc) not in rows.get((row["section"], pat), {}):
                        pdesc += " (with `%s`)" % " ".join(a for a in extra if a != "--set")
                    rows.setdefault((row["section"], pat), {}).setdefault((unit, pdesc), None)
                    if inst:
                        instances.setdefault(inst[0], {})[inst[1]] = inst[2]
    return rows, instances, problems


def cell(s):
    return s.replace("|", "\\|")


def render(rows, instances):
    out = ["| Section | Name | Unit | Description |", "|---|---|---|---|"]
    for (section, pat), variants in rows.items():
        for unit, desc in variants:
            out.append("| %s | `%s` | %s | %s |" % (section, pat, cell(unit), cell(desc)))
    out.append("")
    lists = {
        "<leaf>": "TDX module leaves (`platform.tdx.<leaf>.*`, the SEAMCALL or TDCALL in brackets)",
        "<STATUS>": "completion statuses (`platform.tdx.status.<STATUS>`)",
        "<TYPE>": "PAMT page types (`platform.tdx.pamt.pages.<TYPE>`)",
        "<ID>": "invariant ids (`invariants.violations_<ID>`; T1 to T6 on TDX platforms only)",
    }
    for ph, what in lists.items():
        if ph not in instances:
            continue
        items = []
        for inst, note in sorted(instances[ph].items()):
            items.append("`%s` (%s)" % (inst, note) if note else "`%s`" % inst)
        out.append("`%s`, the %s: %s." % (ph, what, ", ".join(items)))
        out.append("")
    return "\n".join(out)


BEGIN, END = "<!-- BEGIN STATS -->\n", "<!-- END STATS -->"


def block_of(text, doc):
    b, e = text.find(BEGIN), text.find(END)
    if b < 0 or e < 0:
        sys.exit("stats-doc: %s lacks the markers %s / %s" % (doc, BEGIN.strip(), END))
    return b + len(BEGIN), e


def main():
    args = sys.argv[1:]
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    if len(args) != 2:
        sys.exit(__doc__)
    cvmsim, doc = args
    rows, instances, problems = collect(cvmsim)
    gen = render(rows, instances)
    text = open(doc).read()
    b, e = block_of(text, doc)
    if not check:
        open(doc, "w").write(text[:b] + gen + text[e:])
        for p in problems:
            print("stats-doc: warning: " + p, file=sys.stderr)
        return 0
    documented = set(re.findall(r"^\| \w+ \| `([^`]+)` \|", text[b:e], re.M))
    failures = list(problems)
    for (section, pat), variants in rows.items():
        if pat not in documented:
            unit, desc = next(iter(variants))
            failures.append("undocumented statistic: %s [%s] (%s)" % (pat, unit, desc))
    if text[b:e] != gen:
        old, new = text[b:e].splitlines(), gen.splitlines()
        failures += ["stale line in the table: " + l for l in old if l not in new]
        failures += ["line missing from the table: " + l for l in new if l not in old]
        if old != new and set(old) == set(new):
            failures.append("the table's lines are out of order")
    if failures:
        for f in failures:
            print(f, file=sys.stderr)
        print("%s: statistics reference (STATS block) does not match the scenarios' stats.csv: "
              "regenerate it with scripts/regen-docs-fields.sh" % doc, file=sys.stderr)
        return 1
    print("%d statistic patterns documented" % sum(len(v) for v in rows.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
