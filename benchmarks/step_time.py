"""Seconds per optimization step and peak memory, split into generator, FAN, LPIPS and identity.

Random weights throughout (nothing is downloaded): the generator has an FFHQ architecture
(``--arch``: ``sg2`` as NVIDIA's ffhq.pkl, ``sg3-t`` / ``sg3-r`` as the stylegan3 repository's
configs T and R; see ``benchmarks/synthesis_time.py``) at the chosen resolutions, FAN has 4
hourglass modules like the published 2DFAN-4, LPIPS uses VGG16, the identity term FaceNet
(Inception-ResNet-v1) on a 160x160 crop.

Parts (``--parts``), each forward + backward to its input, best of ``--repeats``:

* ``generator``: ``G.synthesis`` from ``ws`` (and noise maps for StyleGAN2) to the image, called
  as a step calls it (``optimization.synthesize``);
* ``fan``: the landmark heat-map loss on the image (crop, FAN, loss);
* ``lpips``: the LPIPS distance of the image to a look;
* ``identity``: the identity term ``1 - cos(E(crop(x)), E(crop(anchor)))`` (``identity.IdentityLoss``);
* ``step``: one whole step of ``optimization.project`` (synthesis, LPIPS + landmark terms,
  backward, Adam, noise renormalization): the time between consecutive step callbacks.

``--batch-size B`` puts B images through each part (B latents in one batched step). With
``--precision``, the step runs with ``ProjectionSettings(precision=...)`` (``project`` applies the
autocast itself); the other parts run under ``precision.autocast`` and synthesis gets
``precision.synthesis_kwargs``. ``auto`` is resolved for the device (``precision.resolve``).
``--allocator keep`` (the default) measures as the commands run, with freed large blocks kept
for reuse (``cpu_memory.keep_freed_memory``); ``system`` leaves glibc's default, which maps and
page-faults every large activation again in every step.
``--arch``, ``--precision``, ``--batch-size`` and ``--allocator`` take comma-separated lists; every
combination is measured.

Each part runs in its own process so that its peak memory is its own (``--in-process`` measures
everything in this process: quicker to start, but the peak memory is then the running maximum).
A resolution below 64 selects tiny networks (the generator of the test fixtures' size and a
1-hourglass FAN) for smoke tests: ``--resolutions 32 --repeats 1``.

    python benchmarks/step_time.py                     # 256 and 1024, device at hand, fp32, sg2
    python benchmarks/step_time.py --resolutions 256 --device cpu --repeats 2 --precision fp32,bf16
    python benchmarks/step_time.py --arch sg2,sg3-t,sg3-r --parts generator,step --json
    python benchmarks/step_time.py --resolutions 256 --parts generator,step --allocator keep,system
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, '..')
sys.path.insert(0, ROOT)

PARTS = ['generator', 'fan', 'lpips', 'identity', 'step']
ALLOCATORS = ['keep', 'system']
LABELS = dict(generator='generator f+b', fan='fan f+b', lpips='lpips f+b', identity='identity f+b',
              step='full step')


def _peak_mib(device) -> float:
    """The device's peak memory: CUDA's allocator peak, or this process's peak resident set size
    (``VmHWM``, which starts afresh with the process; ``ru_maxrss`` carries the parent's peak over
    fork and exec, so every part's peak read as the parent's)."""
    import torch

    from benchmarks.image_memory import _peak_mib as peak_rss_mib
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return peak_rss_mib()


def cpu_description() -> dict:
    """``{'cpu': model name, 'cpu_bf16': native bfloat16 kernels?}``: bf16 figures mean little without it."""
    import platform

    import precision as precision_mod
    name = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            name = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')), name)
    except OSError:
        pass
    return dict(cpu=name, cpu_bf16=precision_mod.cpu_supports_bf16())


def fan_hourglasses(resolution: int) -> int:
    """FAN modules used at ``resolution``: 4 (2DFAN-4), 1 for the tiny smoke-test sizes."""
    from benchmarks.synthesis_time import TINY_BELOW
    return 1 if resolution < TINY_BELOW else 4


def make_weight_files(folder: str, resolutions) -> dict:
    """Random FAN and VGG16 weight files in ``folder``: ``{'vgg': path, 'fan1'/'fan4': path}``.

    Only VGG16's ``features.*`` entries are saved (all that LPIPS reads).
    """
    import torch
    import torchvision
    from fan_network import FAN

    torch.manual_seed(0)
    paths = dict(vgg=os.path.join(folder, 'vgg16-features.pth'))
    vgg = torchvision.models.vgg16()
    torch.save({f'features.{k}': v for k, v in vgg.features.state_dict().items()}, paths['vgg'])
    del vgg
    for n in sorted({fan_hourglasses(r) for r in resolutions}):
        paths[f'fan{n}'] = os.path.join(folder, f'fan{n}.pth')
        torch.save(FAN(n).state_dict(), paths[f'fan{n}'])
    return paths


def measure(part: str, resolution: int, device_name: str, repeats: int, weights: dict, arch: str = 'sg2',
            precision: str = 'fp32', batch_size: int = 1, allocator: str = 'keep') -> dict:
    """Time one part (forward + backward) in this process; returns one result line as a dict.

    ``precision`` is a resolved precision (``fp32``, ``bf16`` or ``fp16``); ``weights`` as
    ``make_weight_files`` returns it; ``allocator`` one of ``ALLOCATORS`` (``keep`` calls
    ``cpu_memory.keep_freed_memory`` first; ``system`` only holds in a fresh process).
    """
    import cpu_memory
    if allocator not in ALLOCATORS:
        raise ValueError(f'allocator must be one of {ALLOCATORS}, got {allocator!r}')
    if allocator == 'keep':
        cpu_memory.keep_freed_memory()
    import torch

    import precision as precision_mod
    from benchmarks.synthesis_time import make_generator, random_noise

    device = torch.device(device_name)
    B = int(batch_size)
    torch.manual_seed(0)
    autocast = lambda: precision_mod.autocast(precision, device)  # noqa: E731
    G = make_generator(arch, resolution).eval().requires_grad_(False).to(device)
    image = torch.rand([1, 3, resolution, resolution], device=device) * 2 - 1      # the look / landmark target
    images = torch.rand([B, 3, resolution, resolution], device=device) * 2 - 1     # what the loss parts score
    fan = perceptual = None
    if part in ('fan', 'step'):
        from landmark_loss import load_fan
        fan = load_fan(weights[f'fan{fan_hourglasses(resolution)}'], device)
    if part in ('lpips', 'step'):
        from perceptual import PerceptualLoss
        perceptual = PerceptualLoss(weights['vgg'], device)
    row = dict(resolution=resolution, part=part, precision=precision, batch_size=B, arch=arch,
               allocator='keep' if cpu_memory.status() == cpu_memory.KEPT else 'system', device=device_name, threads=torch.get_num_threads(),
               **cpu_description())

    if part == 'step':
        # The time between consecutive step callbacks of one run, best of ``repeats``.
        from landmark_loss import LandmarkLoss
        from objectives import look_and_landmarks
        from optimization import ProjectionSettings, project, w_stats
        w_stats(G)  # computed once per network; not part of a step
        objective = look_and_landmarks(perceptual.distance_to(image), LandmarkLoss(fan, image), 1.0, 0.1)
        baseline = _peak_mib(device)
        stamps = []

        def stamp(info):
            if device.type == 'cuda':
                torch.cuda.synchronize(device)
            stamps.append(time.perf_counter())

        project(G, objective, ProjectionSettings(num_steps=repeats + 1, precision=precision),
                callbacks=[stamp], seeds=list(range(B)))
        seconds = min(b - a for a, b in zip(stamps, stamps[1:]))
        peak = _peak_mib(device)
        return dict(row, seconds=seconds, seconds_per_image=seconds / B, peak_mib=peak,
                    peak_over_setup_mib=peak - baseline)

    if part == 'generator':
        from optimization import synthesize
        ws = G.mapping(torch.randn([B, G.z_dim], device=device), None)
        noise = random_noise(G, B, device) or None

        def fn():
            w = ws.detach().clone().requires_grad_(True)
            with autocast():
                out = synthesize(G, w, noise, precision)   # as a step calls it
            out.float().square().mean().backward()
    elif part == 'fan':
        from landmark_loss import LandmarkLoss
        loss = LandmarkLoss(fan, image)

        def fn():
            x = images.detach().clone().requires_grad_(True)
            with autocast():
                out = loss(x)
            out.float().sum().backward()
    elif part == 'lpips':
        look = perceptual.distance_to(image)

        def fn():
            x = images.detach().clone().requires_grad_(True)
            with autocast():
                out = look(x)
            out.float().sum().backward()
    elif part == 'identity':
        import identity
        net = identity.InceptionResnetV1().eval().requires_grad_(False).to(device)
        loss = identity.IdentityLoss(net, image, identity.ffhq_box(resolution))

        def fn():
            x = images.detach().clone().requires_grad_(True)
            with autocast():
                out = loss(x)
            out.float().sum().backward()
    else:
        raise ValueError(f'unknown part {part!r}; one of {PARTS}')

    baseline = _peak_mib(device)
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    peak = _peak_mib(device)
    return dict(row, seconds=min(times), seconds_per_image=min(times) / B, peak_mib=peak,
                peak_over_setup_mib=peak - baseline)


def _list(text: str, kind=str) -> list:
    return [kind(x.strip()) for x in text.split(',') if x.strip()]


def _run_child(spec: dict) -> dict:
    """``measure(**spec)`` in a fresh process (its own peak memory); a failure becomes an ``error`` entry."""
    cmd = [sys.executable, os.path.abspath(__file__), '--child', json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, 'PYTHONPATH': ROOT + os.pathsep + os.environ.get('PYTHONPATH', '')})
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ['exit status %d' % proc.returncode])[-1]
        return dict(error=tail)
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--resolutions', default='256,1024', help='comma-separated (below 64: tiny networks)')
    parser.add_argument('--parts', default=','.join(PARTS), help=f'comma-separated subset of {",".join(PARTS)}')
    parser.add_argument('--arch', default='sg2', help='comma-separated: sg2, sg3-t, sg3-r')
    parser.add_argument('--precision', default='fp32', help='comma-separated: auto, fp32, bf16, fp16')
    parser.add_argument('--batch-size', default='1', help='comma-separated: images per part / latents per step')
    parser.add_argument('--allocator', default='keep',
                        help='comma-separated: keep (freed large blocks reused, as the commands run), system')
    parser.add_argument('--device', default=None, help='cpu or cuda (default: cuda when present)')
    parser.add_argument('--repeats', type=int, default=2)
    parser.add_argument('--json', action='store_true', help='one JSON object per measured line instead of the table')
    parser.add_argument('--in-process', action='store_true',
                        help='measure every part in this process (faster; peak memory is then a running maximum)')
    parser.add_argument('--child', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:  # child process: one measurement, printed as JSON
        print(json.dumps(measure(**json.loads(args.child))))
        return

    import torch

    import precision as precision_mod
    from benchmarks.synthesis_time import ARCHS
    from dnnlib.util import UserError

    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    resolutions = _list(args.resolutions, int)
    parts = _list(args.parts)
    archs = _list(args.arch)
    batch_sizes = _list(args.batch_size, int)
    allocators = _list(args.allocator)
    for value, allowed, what in [(parts, PARTS, '--parts'), (archs, ARCHS, '--arch'),
                                 (allocators, ALLOCATORS, '--allocator')]:
        bad = [v for v in value if v not in allowed]
        if bad:
            parser.error(f'{what}: unknown {", ".join(bad)} (choose from {", ".join(allowed)})')
    if args.repeats < 1 or any(b < 1 for b in batch_sizes):
        parser.error('--repeats and --batch-size must be at least 1')
    if args.in_process and allocators != ['keep']:
        parser.error('--allocator system needs a fresh process per line: leave out --in-process')
    precisions, skipped = [], []
    for requested in _list(args.precision):
        try:
            p = precision_mod.resolve(requested, device)
        except UserError as exc:
            skipped.append(f'{requested}: {exc}')
            continue
        if p not in precisions:
            precisions.append(p)

    def emit_header():
        if args.json:
            return
        cpu = cpu_description()
        print(f'device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, CPU {cpu["cpu"]} '
              f'({"with" if cpu["cpu_bf16"] else "without"} native bfloat16 kernels)'
              + (', in one process' if args.in_process else ''))
        for line in skipped:
            print(f'skipped precision {line}')
        print(f'{"arch":>6} {"resolution":>10} {"part":>14} {"precision":>9} {"batch":>5} {"allocator":>9} '
              f'{"s / step":>9} {"peak MiB":>9} {"(+ over setup)":>15}', flush=True)

    def emit(spec: dict, r: dict):
        if args.json:
            out = dict(resolution=spec['resolution'], part=spec['part'], precision=spec['precision'],
                       batch_size=spec['batch_size'], arch=spec['arch'], allocator=spec['allocator'], seconds=None,
                       peak_mib=None)
            out.update({k: v for k, v in r.items()})
            print(json.dumps(out), flush=True)
            return
        lead = (f'{spec["arch"]:>6} {spec["resolution"]:>10} {LABELS[spec["part"]]:>14} {spec["precision"]:>9} '
                f'{spec["batch_size"]:>5} {spec["allocator"]:>9}')
        if 'error' in r:
            print(f'{lead} failed: {r["error"]}', flush=True)
        else:
            print(f'{lead} {r["seconds"]:9.3f} {r["peak_mib"]:9.0f} {r["peak_over_setup_mib"]:15.0f}', flush=True)

    if args.json:
        for line in skipped:
            print(f'skipped precision {line}', file=sys.stderr)
    emit_header()
    with tempfile.TemporaryDirectory(prefix='bench-weights-') as tmp:  # random weight files, removed afterwards
        weights = make_weight_files(tmp, resolutions)
        for arch, resolution, prec, batch, part, allocator in itertools.product(archs, resolutions, precisions,
                                                                                batch_sizes, parts, allocators):
            spec = dict(part=part, resolution=resolution, device_name=device, repeats=args.repeats,
                        weights=weights, arch=arch, precision=prec, batch_size=batch, allocator=allocator)
            if args.in_process:
                try:
                    r = measure(**spec)
                except Exception as exc:  # report and go on with the other lines
                    r = dict(error=f'{exc.__class__.__name__}: {exc}'.splitlines()[0])
            else:
                r = _run_child(spec)
            emit(spec, r)


if __name__ == '__main__':
    main()
