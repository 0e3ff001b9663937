"""`modeldeck targets ...` and the --target option of devices, profile and compare.

Kept apart from app/cli.py, which hooks these in with a few lines. asyncssh is imported only
when a command talks to a target.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from app.targets.config import LOCAL, Target, TargetError, TargetStore, parse_url
from converters.errors import ModelDeckError

EXIT_OK, EXIT_BAD_INPUT = 0, 2
ACCEPT_HINT = ("after checking the fingerprint with the machine's owner, pin it with "
               "`modeldeck targets check {name} --accept-new-host-key`")


def add_target_arg(p: argparse.ArgumentParser, several: bool = True) -> None:
    p.add_argument("--target", action="append", metavar="NAME|ssh://USER@HOST[:PORT]",
                   help="run on a remote machine over SSH (see `modeldeck targets`)"
                        + ("; repeat to run on several, one job per target at a time, "
                           "results labelled by target" if several else ""))


def targets_of(args: argparse.Namespace) -> list[str]:
    return [t for t in (getattr(args, "target", None) or []) if t != LOCAL] \
        if getattr(args, "target", None) else []


def _gb(n: float | None) -> str:
    return "?" if not n else f"{n / 2**30:.1f} GB"


def _confirm(fingerprint: str) -> bool:
    if not sys.stdin.isatty():
        return False
    answer = input(f"The target's host key is {fingerprint}.\nIs this the key of the machine you "
                   "meant (ask its owner, or run ssh-keygen -lf on its /etc/ssh/*.pub)? Pin it "
                   "in ~/.ssh/known_hosts [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _host_key_hint(e: Exception, name: str) -> str:
    if getattr(e, "kind", None) == "unknown":
        return "; " + ACCEPT_HINT.format(name=name)
    return ""


def cmd_targets_add(args: argparse.Namespace) -> int:
    t = parse_url(args.url, name=args.name)
    t = t.with_(identity=args.identity, python=args.python or t.python,
                cache_dir=args.cache_dir or t.cache_dir)
    store = TargetStore()
    store.add(t)
    print(f"added target {t.name}: {t.url}")
    if args.no_connect:
        return EXIT_OK
    return _check_and_print(t, args, quiet=True)


def cmd_targets_list(args: argparse.Namespace) -> int:
    targets = TargetStore().load()
    if args.json:
        json.dump([t.to_dict() for t in targets.values()], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    if not targets:
        print("no targets yet: modeldeck targets add NAME ssh://USER@HOST[:PORT]")
    for t in targets.values():
        set_up = f"  backends {', '.join(t.backends)}" if t.backends else ""
        print(f"{t.name:<16s} {t.url:<36s} python {t.python}{set_up}")
    return EXIT_OK


def cmd_targets_remove(args: argparse.Namespace) -> int:
    gone = TargetStore().remove(args.name)
    print(f"removed target {gone.name} ({gone.url}); its host key stays in ~/.ssh/known_hosts "
          "and its cache on the machine")
    return EXIT_OK


def _check_and_print(t: Target, args: argparse.Namespace, quiet: bool = False) -> int:
    from app.targets.probe import check_target

    try:
        facts = check_target(t, accept_new=args.accept_new_host_key, confirm=_confirm)
    except TargetError as e:
        raise TargetError(f"{e}{_host_key_hint(e, t.name)}") from None
    if getattr(args, "json", False):
        json.dump(facts, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    print(f"{t.name}: reachable ({t.url}, connected in {facts['connect_s']:.2f} s)")
    if quiet:
        return EXIT_OK
    p = print
    p(f"  python      {facts['python']} ({facts['executable']})")
    p(f"  system      {facts['platform']}")
    p(f"  cpu         {facts['cpu_model']}, {facts['cpu_count']} logical CPUs")
    p(f"  isa         {' '.join(facts['isa']) or '(none of the listed)'}")
    p(f"  memory      {_gb(facts['mem_available_bytes'])} free of "
      f"{_gb(facts['mem_total_bytes'])}")
    p(f"  disk        {_gb(facts['disk_free_bytes'])} free at {facts['cache_dir']}")
    pk = facts["packages"]
    p("  packages    " + (", ".join(f"{k} {v}" for k, v in pk.items()) or "none of ours"))
    for b in facts["backends"]:
        if not b.get("formats"):
            continue
        state = b["version"] if b["available"] else f"not available: {b['version']}"
        p(f"  {b['backend']}: {state}")
        for d in b["devices"]:
            if d["available"]:
                p(f"    {d['name']}" + (f" — {d['description']}" if d["description"] else ""))
    if facts.get("note"):
        p(f"  note        {facts['note']}")
    return EXIT_OK


def cmd_targets_check(args: argparse.Namespace) -> int:
    return _check_and_print(TargetStore().get(args.name), args)


def cmd_targets_setup(args: argparse.Namespace) -> int:
    from app.targets.probe import setup_target

    store = TargetStore()
    t = store.get(args.name)
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    if args.accept_new_host_key:
        from app.targets.probe import check_target

        check_target(t, accept_new=True)
    try:
        new = setup_target(t, backends, system_site_packages=args.system_site_packages,
                           pinned=not args.unpinned,
                           log=lambda line: print(line, file=sys.stderr))
    except TargetError as e:
        raise TargetError(f"{e}{_host_key_hint(e, t.name)}") from None
    if t.name in store.load():
        store.update(new)
    print(f"{new.name}: set up with {', '.join(new.backends)}; jobs run with {new.python}")
    return _check_and_print(new, argparse.Namespace(accept_new_host_key=False, json=False))


def add_targets_parser(sub) -> None:
    p = sub.add_parser("targets", help="remote machines to run on over SSH")
    tsub = p.add_subparsers(dest="targets_command", required=True)
    a = tsub.add_parser("add", help="add a target: NAME ssh://USER@HOST[:PORT]")
    a.add_argument("name")
    a.add_argument("url", metavar="ssh://USER@HOST[:PORT]")
    a.add_argument("--identity", metavar="KEY", help="private key file (default: the ssh "
                   "agent, ~/.ssh/id_* and ~/.ssh/config)")
    a.add_argument("--python", metavar="PATH", help="Python on the target (default python3)")
    a.add_argument("--cache-dir", metavar="DIR", help="engine, models and data on the target "
                   "(default ~/.cache/modeldeck)")
    a.add_argument("--accept-new-host-key", action="store_true",
                   help="pin the host key of a host not yet in ~/.ssh/known_hosts without "
                        "asking (a changed key is refused all the same)")
    a.add_argument("--no-connect", action="store_true", help="only save it")
    a.set_defaults(func=cmd_targets_add)
    a = tsub.add_parser("list", help="the configured targets")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_targets_list)
    a = tsub.add_parser("remove", help="forget a target")
    a.add_argument("name")
    a.set_defaults(func=cmd_targets_remove)
    a = tsub.add_parser("check", help="reachable? Python, runtimes, devices, CPU, memory, disk")
    a.add_argument("name", metavar="NAME|ssh://USER@HOST[:PORT]")
    a.add_argument("--accept-new-host-key", action="store_true",
                   help="pin an unknown host key without asking")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_targets_check)
    a = tsub.add_parser("setup", help="a venv on the target with only the chosen backends")
    a.add_argument("name")
    a.add_argument("--backends", default="onnxruntime",
                   help="comma-separated: onnxruntime, openvino, torch (default onnxruntime)")
    a.add_argument("--system-site-packages", action="store_true",
                   help="let the venv see the target Python's own packages (what is there "
                        "already is not installed again)")
    a.add_argument("--unpinned", action="store_true",
                   help="latest versions the target's index has, not this computer's pins")
    a.add_argument("--accept-new-host-key", action="store_true")
    a.set_defaults(func=cmd_targets_setup)


# --- --target on devices / profile / compare ---------------------------------------------------

def remote_devices(target: str) -> list[dict[str, Any]]:
    from app.targets.sweep import run_on_target

    outcome = run_on_target({"job": "devices"}, target)
    if outcome.status != "ok":
        raise TargetError(outcome.error or "the devices probe failed")
    return outcome.result["backends"]


def print_target_line(report: dict[str, Any], out=None) -> None:
    """Where a remote run ran and what it cost to get there."""
    t = report.get("target") or {}
    if not t.get("url"):
        return
    out = out or sys.stdout
    sent = t.get("sent_bytes", 0)
    print(f"  target      {t['name']} ({t['url']}): sent {sent / 2**20:.2f} MB in "
          f"{t.get('transfer_s', 0):.2f} s, connected in {t.get('connect_s', 0):.2f} s, "
          f"worker started {t.get('worker_started_s', 0):.2f} s after the start", file=out)


def run_on_targets(spec: dict[str, Any], targets: list[str], args: argparse.Namespace,
                   limits: dict[str, Any]) -> list:
    """The same job on each target (one job per target at a time), labelled by target."""
    from app.targets.sweep import run_each

    def show(target: str, _i: int, e: dict[str, Any]) -> None:
        if e.get("event") == "stage" and sys.stderr.isatty():
            print(f"[{target}] {e.get('stage')}: {str(e.get('message', ''))[:80]}",
                  file=sys.stderr)

    return run_each(spec, targets, on_event=show, **limits)


def multi_target_guard(args: argparse.Namespace) -> None:
    if len(targets_of(args)) > 1 and (getattr(args, "html", None) or getattr(args, "csv", None)):
        raise ModelDeckError("--html and --csv write one run: with several --target, use "
                             "--json OUT (a list of reports, one per target)")


ERROR_KINDS = ("target", "host_key", "link")  # a remote job's failures: exit 2, one line


def profile_on_targets(config: dict[str, Any], targets: list[str], args: argparse.Namespace,
                       limits: dict[str, Any]) -> int:
    """`profile --target A --target B`: the same profile on each, a line per target."""
    from app.cli import EXIT_BUDGET, _print_profile

    multi_target_guard(args)
    items = run_on_targets({"job": "profile", "config": config}, targets, args, limits)
    done, failed = _results(items, args)
    reports = []
    for target, report in done:
        reports.append(report)
        if not args.quiet:
            out = sys.stderr if args.json == "-" else sys.stdout
            print(f"== target {target}", file=out)
            _print_profile(report, out)
            print_target_line(report, out)
    if args.json:
        text = json.dumps(reports)
        if args.json == "-":
            sys.stdout.write(text + "\n")
        else:
            with open(args.json, "w") as f:
                f.write(text)
    if not args.quiet and reports:
        out = sys.stderr if args.json == "-" else sys.stdout
        print(f"\n{'target':<20s} {'p50 ms':>9s} {'p99 ms':>9s} {'inf/s':>9s}  cpu", file=out)
        for r in reports:
            lat = r["latency_ms"]
            cpu = (r.get("environment") or {}).get("cpu_model") or ""
            print(f"{r['target']['name']:<20s} {lat['p50']:>9.3f} {lat['p99']:>9.3f} "
                  f"{r['throughput_ips']:>9.1f}  {str(cpu)[:40]}", file=out)
    if failed:
        return EXIT_BAD_INPUT
    broken = any(b["ok"] is False for r in reports for b in r.get("budgets", []))
    return EXIT_BUDGET if broken else EXIT_OK


def _results(items: list[Any], args: argparse.Namespace) -> tuple[list[tuple[str, Any]], int]:
    """(target, result) of each job that ended well, and how many did not (each said on
    stderr with its target's name)."""
    from app.cli import _job_or_raise

    done, failed = [], 0
    for it in items:
        try:
            result = _job_or_raise(it.outcome, args.debug)
        except ModelDeckError as e:
            print(f"modeldeck: error on target {it.target}: {e}", file=sys.stderr)
            failed += 1
            continue
        if isinstance(result, int):  # an exit code: the job failed and said so
            failed += 1
            continue
        done.append((it.target, result))
    return done, failed


def compare_on_targets(spec: dict[str, Any], targets: list[str], args: argparse.Namespace,
                       limits: dict[str, Any]) -> int:
    """`compare --target A --target B`: the variants compared on each target, rows labelled."""
    from app.cli import _fmt_opt

    multi_target_guard(args)
    done, failed = _results(run_on_targets(spec, targets, args, limits), args)
    results = []
    for target, result in done:
        for r in result["rows"]:
            r["target"] = target
        results.append(result)
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        from pathlib import Path

        print(f"\n{'target':<16s} {'model':<30s} {'backend':<12s} {'p50 ms':>9s} {'p99 ms':>9s} "
              f"{'cosine':>9s}")
        for result in results:
            for r in result["rows"]:
                fid = r["fidelity"] or {}
                print(f"{r['target']:<16s} {Path(r['model']).name[:30]:<30s} "
                      f"{r['backend']:<12s} {r['latency_ms']['p50']:>9.4f} "
                      f"{r['latency_ms']['p99']:>9.4f} {_fmt_opt(fid.get('cosine'), '.6f'):>9s}")
    return EXIT_BAD_INPUT if failed else EXIT_OK
