"""Flash, static RAM and worst-case stack of the C runtime (``runtime/c``) per target.

Each target's runtime is compiled with the firmware example's own compiler, CPU flags and optimisation
level (``OPT`` in firmware_examples/*/Makefile), with ``-fstack-usage``, and linked (``--gc-sections``,
libgcc, no C library) behind a driver that calls only what is measured, so the image holds exactly the
code and data those calls need:

- flash = text + data of the image less the driver's own function (on AVR, ``.rodata`` is in data:
  avr-gcc copies it into RAM at start-up, so it is flash and RAM);
- static RAM = data + bss;
- worst-case stack of a call = its frame plus the deepest chain of callees, summed over the call graph
  read from the image's disassembly (direct and tail calls; an indirect call or recursion is an error,
  since the sum would not be a bound).  A frame is gcc's ``-fstack-usage`` figure, or, for libgcc's
  assembly routines that have none, every push in the routine's body (plus ``sub sp`` on Arm) and the
  return address.  On AVR gcc's figure includes the 2- or 3-byte return address; on Arm ``bl`` pushes
  nothing.

Run as a script to print the table (``python tests/firmware/resources.py``); tests/firmware/
test_resources.py checks it against the painted-stack runs and against docs/runtime.md.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "runtime" / "c"
EXAMPLES = ROOT / "firmware_examples"


@dataclass(frozen=True)
class Target:
    """A device: its compiler prefix, CPU flags (as in its example's Makefile) and return-address size."""

    name: str
    example: str  # folder under firmware_examples whose Makefile sets OPT and the CPU flags
    prefix: str  # arm-none-eabi- or avr-
    cpu: tuple[str, ...]
    return_bytes: int  # bytes a call pushes (0: Arm's bl keeps the return address in lr)

    @property
    def arch(self) -> str:
        return "avr" if self.prefix == "avr-" else "arm"

    def opt(self) -> str:
        """The optimisation level the example's Makefile builds with (its ``OPT ?=`` line)."""
        text = (EXAMPLES / self.example / "Makefile").read_text()
        match = re.search(r"^OPT\s*\?=\s*(\S+)", text, re.M)
        if match is None:
            raise ValueError(f"no OPT ?= line in firmware_examples/{self.example}/Makefile")
        return match.group(1)


TARGETS = {
    t.name: t
    for t in (
        Target(
            "cortex-m0", "cortex-m", "arm-none-eabi-", ("-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft"), 0
        ),
        Target(
            "cortex-m4",
            "cortex-m",
            "arm-none-eabi-",
            ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"),
            0,
        ),
        Target("atmega328p", "arduino", "avr-", ("-mmcu=atmega328p",), 2),
        Target("atmega2560", "arduino", "avr-", ("-mmcu=atmega2560",), 3),
    )
}

CALLS = ("direct_model_open", "direct_predict", "direct_predict_exact")

DRIVER = """#include "direct.h"
int drv_open(direct_model *m, const void *b, uint32_t n);
int drv_predict(const direct_model *m, const int16_t *x, void *s, uint32_t ss, direct_prediction *p);
int drv_open(direct_model *m, const void *b, uint32_t n) {
    return (int)direct_model_open(m, b, n);
}
int drv_predict(const direct_model *m, const int16_t *x, void *s, uint32_t ss, direct_prediction *p) {
    return (int)direct_predict(m, x, s, ss, p) + (int)direct_predict_exact(m, x, s, ss, p);
}
const char *drv_name(direct_status st);
const char *drv_name(direct_status st) {
    return direct_status_name(st);
}
"""


class AnalysisError(RuntimeError):
    """The static stack sum would not be a bound (indirect call, recursion, dynamic frame)."""


def _run(args: list[str], cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


@dataclass
class Measured:
    """One target's numbers, bytes: flash and static RAM per entry ("open", "predict", "all"), and the
    static worst-case stack of each call in CALLS."""

    flash: dict[str, int]
    ram: dict[str, int]
    stack: dict[str, int]


def stack_usage(su_files: list[Path]) -> dict[str, int]:
    """Function name -> bytes of its own frame, from gcc's .su files (the largest over translation units
    for a name that occurs twice).  Raises AnalysisError for a dynamic frame (alloca, VLA)."""
    frames: dict[str, int] = {}
    for path in su_files:
        for line in path.read_text().splitlines():
            where, size, kind = line.split("\t")
            name = where.rsplit(":", 1)[1]
            if kind != "static":
                raise AnalysisError(f"{name} has a {kind} frame ({path.name}): no static bound")
            frames[name] = max(frames.get(name, 0), int(size))
    return frames


_FUNC = re.compile(r"^([0-9a-f]+) <([^>]+)>:$")
_TARGET = re.compile(r"<([^>+]+)(\+0x[0-9a-f]+)?>\s*$")
_ARM_BRANCH = re.compile(r"^(bl|blx|b|cbn?z)(eq|ne|cs|cc|hs|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le|al)?(\.n|\.w)?$")
_ARM_REGS = re.compile(r"\{([^}]*)\}")


def _arm_pushed(mnemonic: str, operands: str) -> int:
    """Bytes an Arm instruction moves sp down by (push/stmdb sp!/vpush, sub sp), else 0."""
    if mnemonic in ("push", "push.w", "vpush") or (
        mnemonic.startswith("stmdb") and operands.startswith("sp!")
    ):
        regs = _ARM_REGS.search(operands)
        count = 0
        for reg in (r.strip() for r in regs.group(1).split(",")) if regs else ():
            if "-" in reg:  # a range such as r4-r7 or d8-d15
                lo, hi = (int(x[1:]) for x in reg.split("-"))
                count += (hi - lo + 1) * (2 if reg.startswith("d") else 1)
            else:
                count += 2 if reg.startswith("d") else 1
        return 4 * count
    match = re.match(r"sp,\s*(?:sp,\s*)?#(\d+)", operands)
    if mnemonic.startswith("sub") and match:
        return int(match.group(1))
    return 0


def call_graph(disassembly: str, arch: str) -> tuple[dict[str, set[tuple[str, str]]], dict[str, int]]:
    """From ``objdump -d``: function -> {(callee, kind)}, kind "call", "jump" (a tail call) or "fall"
    (the body does not end in a return or jump and runs into the next symbol, as libgcc's assembly
    does), and function -> bytes its body pushes (used where gcc gave no frame).  Raises
    AnalysisError for an indirect call or jump."""
    edges: dict[str, set[tuple[str, str]]] = {}
    pushed: dict[str, int] = {}
    order: list[str] = []
    last: dict[str, str] = {}
    current = None
    for line in disassembly.splitlines():
        head = _FUNC.match(line)
        if head:
            current = head.group(2)
            order.append(current)
            edges.setdefault(current, set())
            pushed.setdefault(current, 0)
            continue
        parts = line.split("\t")
        if current is None or len(parts) < 3 or not parts[0].strip().endswith(":"):
            continue
        mnemonic, operands = parts[2].strip(), "\t".join(parts[3:]).strip()
        last[current] = mnemonic
        if arch == "arm":
            pushed[current] += _arm_pushed(mnemonic, operands)
            branch = _ARM_BRANCH.match(mnemonic)
            if mnemonic in ("blx", "bx") and not operands.startswith("lr") and "<" not in operands:
                raise AnalysisError(f"{current}: indirect branch '{mnemonic} {operands}'")
            is_call = branch is not None and branch.group(1) in ("bl", "blx")
        else:
            pushed[current] += 1 if mnemonic == "push" else 0
            if mnemonic in ("icall", "eicall", "ijmp", "eijmp"):
                raise AnalysisError(f"{current}: indirect {mnemonic}")
            branch = re.match(r"^(r?call|r?jmp|br[a-z]{2})$", mnemonic)
            is_call = branch is not None and mnemonic.endswith("call")
        target = _TARGET.search(operands)
        if branch is None or target is None or target.group(1) == current:
            continue  # not a branch, or one inside the function (avr's "rcall .+0" reserves 2 bytes)
        edges[current].add((target.group(1), "call" if is_call else "jump"))
    ends = ("ret", "reti", "jmp", "rjmp") if arch == "avr" else ("b", "b.n", "b.w", "pop", "bx")
    for this, following in zip(order, order[1:], strict=False):
        if last.get(this) not in ends and not (arch == "arm" and last.get(this, "").startswith("pop")):
            edges[this].add((following, "fall"))
    return edges, pushed


def worst_stack(
    function: str, frames: dict[str, int], edges: dict[str, set], pushed: dict[str, int], return_bytes: int
) -> int:
    """Bytes of stack ``function`` can use at most: its frame plus its deepest callee chain."""
    memo: dict[str, int] = {}

    def frame(name: str) -> int:
        if name in frames:
            return frames[name]
        return pushed.get(name, 0) + return_bytes  # a libgcc routine: its pushes and the return address

    def visit(name: str, path: tuple[str, ...]) -> int:
        if name in path:
            raise AnalysisError(f"recursion: {' -> '.join((*path, name))}")
        if name not in memo:
            # gcc's functions end in a return or a jump (a literal pool may follow): no fall through
            below = [
                visit(callee, (*path, name))
                for callee, kind in edges.get(name, ())
                if kind != "fall" or name not in frames
            ]
            memo[name] = frame(name) + max(below, default=0)
        return memo[name]

    return visit(function, ())


def measure(target: Target, runtime: Path = RUNTIME) -> Measured:
    """Compile, link and analyse the runtime for ``target`` (see the module's docstring)."""
    cc, tools = f"{target.prefix}gcc", target.prefix
    flags = [
        "-std=c99",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-pedantic",
        target.opt(),
        *target.cpu,
        "-ffunction-sections",
        "-fdata-sections",
        "-fstack-usage",
        f"-I{runtime}",
    ]
    with tempfile.TemporaryDirectory(prefix="direct-resources-") as tmp:
        work = Path(tmp)
        (work / "drv.c").write_text(DRIVER)
        objects = []
        for src in (runtime / "direct.c", runtime / "direct_predict.c", work / "drv.c"):
            obj = work / (src.stem + ".o")
            _run([cc, *flags, "-c", str(src), "-o", str(obj)], work)
            objects.append(str(obj))
        frames = stack_usage(sorted(work.glob("*.su")))
        flash, ram, stack = {}, {}, {}
        for entry, drivers in {
            "open": ["drv_open"],
            "predict": ["drv_predict"],
            "all": ["drv_open", "drv_predict", "drv_name"],
        }.items():
            elf = work / f"{entry}.elf"
            keep = [f"-Wl,--undefined={d}" for d in drivers]
            _run(
                [
                    cc,
                    *target.cpu,
                    "-nostdlib",
                    "-nostartfiles",
                    "-Wl,--gc-sections",
                    *keep,
                    f"-Wl,-e,{drivers[0]}",
                    *objects,
                    "-lgcc",
                    "-o",
                    str(elf),
                ],
                work,
            )
            text, data, bss = (
                int(v) for v in _run([f"{tools}size", str(elf)], work).splitlines()[1].split()[:3]
            )
            symbols = _run([f"{tools}nm", "-S", str(elf)], work).splitlines()
            driver = sum(
                int(parts[1], 16)
                for parts in (s.split() for s in symbols)
                if len(parts) == 4 and parts[3] in drivers
            )
            flash[entry], ram[entry] = text + data - driver, data + bss
            if entry == "all":
                edges, pushed = call_graph(_run([f"{tools}objdump", "-d", str(elf)], work), target.arch)
                for call in CALLS:
                    stack[call] = worst_stack(call, frames, edges, pushed, target.return_bytes)
    return Measured(flash, ram, stack)


def main() -> None:
    head = f"{'target':<12} {'opt':<4} {'flash all/open/predict':>24} {'static RAM':>10}"
    print(f"{head}  stack open/predict/exact")
    for target in TARGETS.values():
        try:
            m = measure(target)
        except (OSError, RuntimeError) as exc:
            print(f"{target.name:<12} not measured: {str(exc).splitlines()[0]}", file=sys.stderr)
            continue
        flash = "/".join(str(m.flash[k]) for k in ("all", "open", "predict"))
        stack = "/".join(str(m.stack[c]) for c in CALLS)
        print(f"{target.name:<12} {target.opt():<4} {flash:>24} {m.ram['all']:>10}  {stack}")


if __name__ == "__main__":
    main()
