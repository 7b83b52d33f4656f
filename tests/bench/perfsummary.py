"""perf record / perf report for bench.py's profile: samples of one process (cpu-clock, all its
threads), grouped by library and by function. Debian's libcrypto is stripped of its local
symbols (its AES-GCM assembly among them): an address perf cannot name is attributed to the
function that contains it according to the library's unwind table (.eh_frame FDEs, which
OpenSSL's assembly also emits), and that function is labelled by the instructions it holds
(AES rounds, carry-less multiplies for GHASH)."""
import bisect
import os
import re
import signal
import subprocess
import time

# Kernel functions by what they do (name patterns, first match wins; an approximation).
KERNEL_KINDS = [
    ("copy to/from user", r"copy_(to|from)_iter|copy_user|_copy_|memcpy|memmove|rep_movs"),
    ("irq-enable/switch points (time with interrupts off lands here under cpu-clock sampling)",
     r"_raw_spin_unlock_irq|finish_task_switch|handle_softirqs|__do_softirq|irq_exit|local_bh_enable"),
    ("TCP/IP and sockets", r"tcp|^ip_|^__ip|inet|skb|sock|net_rx|netif|__dev_|dev_hard|loopback|nf_|bbr|"
                           r"raw_local|__napi|sk_|neigh|dst_|process_backlog|validate_xmit|ipv4"),
    ("scheduler and wakeups", r"schedule|wake|sched|pv_queued|queued_spin|futex|select_task|enqueue|dequeue"),
    ("syscall entry, epoll, vfs", r"syscall|entry_|epoll|ep_|fdget|fput|vfs_|ksys_|__x64_sys|rw_verify|"
                                  r"security_|fsnotify|rseq|__fget|do_sys|pipe|eventfd"),
    ("memory (pages, slabs)", r"kmem|kmalloc|kfree|alloc_pages|page|slab|folio|__alloc|free_|rmqueue|memcg|"
                              r"check_object_size|virt_addr_valid|mod_lruvec"),
]


def available():
    r = subprocess.run(["perf", "record", "-e", "cpu-clock", "-o", "/dev/null", "true"], capture_output=True)
    return r.returncode == 0


class Recording:
    """perf record -p PID while the caller runs something; stop() ends it."""

    def __init__(self, pid, data, freq=4999):
        self.pid = pid
        self.data = data
        self.maps = dso_paths(pid)
        self.proc = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", str(freq), "-p", str(pid),
                                      "-o", data], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)   # perf attaches to every thread first

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if not os.path.exists(self.data):
            raise RuntimeError("perf record wrote nothing: %s" % self.proc.stderr.read()[-300:])


def dso_paths(pid):
    """basename -> path of every file mapped by pid (perf report names DSOs by basename)."""
    out = {}
    try:
        with open("/proc/%d/maps" % pid) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and parts[5].startswith("/"):
                    out[os.path.basename(parts[5])] = parts[5]
    except OSError:
        pass
    return out


def report(data):
    """[(pct, dso, sym)] from perf report --sort dso,sym, every row."""
    r = subprocess.run(["perf", "report", "-i", data, "--stdio", "-q", "--sort", "dso,sym", "--percent-limit", "0"],
                       capture_output=True, text=True, errors="replace", timeout=600)
    rows = []
    for line in r.stdout.splitlines():
        m = re.match(r"^\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*?)\s*$", line)
        if m:
            rows.append((float(m.group(1)), m.group(2), m.group(4)))
    if not rows:
        raise RuntimeError("perf report gave nothing: %s" % r.stderr[-300:])
    return rows


def group_of(dso):
    d = os.path.basename(dso)
    if d.startswith("[kernel") or d in ("[vdso]", "[vsyscall]"):
        return "kernel"
    for g in ("libcrypto", "libssl", "libc.so", "libuv", "ftpsgate", "libjansson", "socat"):
        if d.startswith(g):
            return g.replace(".so", "")
    return "other"


def kernel_kind(sym):
    for kind, pat in KERNEL_KINDS:
        if re.search(pat, sym):
            return kind
    return "other kernel"


class Unnamed:
    """Function ranges of one ELF file from its .eh_frame, and what their code does."""

    def __init__(self, path):
        self.path = path
        r = subprocess.run(["readelf", "--debug-dump=frames", path], capture_output=True, text=True,
                           errors="replace", timeout=120)
        rs = sorted({(int(a, 16), int(b, 16)) for a, b in re.findall(r"FDE .*pc=([0-9a-f]+)\.\.([0-9a-f]+)", r.stdout)})
        self.starts = [a for a, _ in rs]
        self.ranges = rs
        self.labels = {}

    def function(self, addr):
        i = bisect.bisect_right(self.starts, addr) - 1
        if i >= 0 and self.ranges[i][0] <= addr < self.ranges[i][1]:
            return self.ranges[i]
        return None

    def label(self, rng):
        if rng not in self.labels:
            r = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "--start-address=0x%x" % rng[0],
                                "--stop-address=0x%x" % rng[1], self.path], capture_output=True, text=True,
                               errors="replace", timeout=120)
            ins = re.findall(r"^\s+[0-9a-f]+:\s+(\S+)", r.stdout, re.M)
            aes = sum(1 for i in ins if "aesenc" in i or "aesdec" in i)
            clmul = sum(1 for i in ins if "pclmul" in i)
            what = ("AES rounds + GHASH (stitched AES-GCM)" if aes and clmul else
                    "GHASH (carry-less multiply)" if clmul else "AES rounds" if aes else
                    "no AES/GHASH instructions")
            self.labels[rng] = "fn@0x%x (%d instr., %s)" % (rng[0], len(ins), what)
        return self.labels[rng]


def summarize(rows, paths):
    """{"groups": {group: pct}, "kernel": {kind: pct}, "funcs": [(pct, group, name)] (aggregated,
    unnamed addresses folded into their function), "n": rows}."""
    groups, kern, funcs = {}, {}, {}
    unnamed = {}
    for pct, dso, sym in rows:
        g = group_of(dso)
        groups[g] = groups.get(g, 0.0) + pct
        name = sym
        if g == "kernel":
            k = kernel_kind(sym)
            kern[k] = kern.get(k, 0.0) + pct
        elif re.fullmatch(r"0x[0-9a-f]+", sym) and dso in paths:
            u = unnamed.get(dso)
            if u is None:
                u = unnamed[dso] = Unnamed(paths[dso])
            rng = u.function(int(sym, 16))
            name = u.label(rng) if rng else "unnamed code outside any FDE"
        key = (g, name)
        funcs[key] = funcs.get(key, 0.0) + pct
    flist = sorted(((p, g, n) for (g, n), p in funcs.items()), reverse=True)
    return {"groups": groups, "kernel": kern, "funcs": flist}


def render(title, s, cpu_per_gib, top=30):
    lines = ["== %s: %.3f CPU-s/GiB in the profiled process during this run" % (title, cpu_per_gib),
             "share by group (s/GiB = share x CPU-s/GiB):"]
    for g, pct in sorted(s["groups"].items(), key=lambda kv: -kv[1]):
        lines.append("  %-10s %5.1f %%  %.3f s/GiB" % (g, pct, pct / 100 * cpu_per_gib))
    if s["kernel"]:
        lines.append("kernel by kind (by function name, approximate):")
        for k, pct in sorted(s["kernel"].items(), key=lambda kv: -kv[1]):
            lines.append("  %5.1f %%  %.3f s/GiB  %s" % (pct, pct / 100 * cpu_per_gib, k))
    lines.append("top functions (unnamed libcrypto code folded into its function, see the header):")
    for pct, g, n in s["funcs"][:top]:
        lines.append("  %5.2f %%  %-10s %s" % (pct, g, n))
    for g in ("libcrypto", "libc", "libssl", "ftpsgate", "libuv"):
        fs = [(p, n) for p, gg, n in s["funcs"] if gg == g]
        if fs:
            lines.append("%s, all functions over 0.2 %%: %s" % (g, "; ".join(
                "%s %.1f %%" % (n, p) for p, n in fs if p >= 0.2) or "(none)"))
    return lines
