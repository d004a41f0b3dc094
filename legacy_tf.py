"""TensorFlow-era StyleGAN2 networks (NVlabs/stylegan2, stylegan2-ada TF) as our PyTorch modules.

A TF network pickle is a tuple ``(G, D, Gs)`` of ``dnnlib.tflib.network.Network`` objects. The
restricted unpickler in ``legacy`` reads each one as a ``TFNetworkState`` (its pickled state:
``static_kwargs``, ``components``, ``variables`` as ``(name, numpy array)`` pairs, and the TF build
code as text, which is never executed). This module turns those into ``networks.Generator`` and
``networks.Discriminator``: constructor arguments from the static kwargs, tensors from the TF
variables. The correspondences are those of NVIDIA's own converter in stylegan2-ada-pytorch
(``legacy.convert_tf_generator`` / ``convert_tf_discriminator``):

* dense weights are stored ``[in, out]`` in TF and ``[out, in]`` here; convolution kernels
  ``[kh, kw, in, out]`` in TF and ``[out, in, kh, kw]`` here, and the kernels of TF's transposed
  (upsampling) convolutions are flipped in both spatial axes;
* TF's style biases are stored minus one (``mod_bias + 1`` is our ``affine.bias``);
* the synthesis noise buffers ``noise0, noise1, ...`` run over the layers in order:
  ``b4.conv1`` is ``noise0``, ``b{r}.conv0`` is ``noise{2 log2(r) - 5}`` and ``b{r}.conv1``
  ``noise{2 log2(r) - 4}``;
* ``fmap_base`` is half our ``channel_base`` (TF counts channels from ``fmap_base / res * 2``).

Readable: the config-E/F layouts (``G_synthesis_stylegan2`` with skip / resnet / orig outputs,
``D_stylegan2``), unconditional or conditional as StyleGAN2-ADA's TF code wrote it
(``LabelEmbed``). Refused with a message: the progressive configs B-D
(``G_synthesis_stylegan_revised``), StyleGAN1 networks, the original repository's
``LabelConcat`` conditioning, and any static kwarg the converter does not know.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

import networks
from dnnlib.util import UserError

__all__ = ['TFNetworkState', 'convert_generator', 'convert_discriminator', 'TF_FAMILY']

TF_FAMILY = 'tf'
MIN_VERSION = 4
_STATE_KEYS = ('version', 'name', 'static_kwargs', 'components', 'build_module_src', 'build_func_name',
               'variables')
_REFUSED_BUILD_FUNCS = {
    'G_synthesis_stylegan_revised': 'a progressive StyleGAN2 config B-D generator (G_synthesis_stylegan_revised)',
    'G_synthesis_stylegan': 'a StyleGAN1 generator (G_synthesis_stylegan)',
    'G_style': 'a StyleGAN1 generator (G_style)',
    'D_stylegan': 'a progressive StyleGAN2 config B-D / StyleGAN1 discriminator (D_stylegan)',
    'D_basic': 'a StyleGAN1 discriminator (D_basic)',
}


class TFConversionError(UserError):
    """A TensorFlow network pickle this converter cannot read."""


def is_plain_data(value: Any) -> bool:
    """Plain data only (no callables or other objects): what TF network state and the constructor
    arguments of any network pickle consist of."""
    if value is None or isinstance(value, (bool, int, float, str, bytes, np.ndarray)):
        return not (isinstance(value, np.ndarray) and value.dtype.hasobject)
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(is_plain_data(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain_data(v) for k, v in value.items())
    return False


class TFNetworkState:
    """``dnnlib.tflib.network.Network`` as its pickle holds it: checked plain data, nothing executed.

    ``build_module_src`` (the TF code the original loader executed) is kept only as text and never
    used. Any entry other than the TF ``Network.__getstate__`` keys, or a value that is not plain
    data (a callable, an object), is refused.
    """

    def __init__(self, *args, **kwargs):
        if args or kwargs:
            raise TFConversionError('malformed TensorFlow network object in the pickle')
        self.version = 0
        self.name = ''
        self.static_kwargs: Dict[str, Any] = {}
        self.components: Dict[str, 'TFNetworkState'] = {}
        self.build_func_name = ''
        self.variables: List[tuple] = []

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise TFConversionError('malformed TensorFlow network state in the pickle')
        self._raw = state

    def finish(self, materialize: Callable[[Any], Any] = lambda x: x) -> 'TFNetworkState':
        """Check the pickled state (after the unpickler's ``materialize`` turned its array records
        into arrays) and take it; components are finished too."""
        state = getattr(self, '_raw', None)
        if state is None:
            if self.version:  # already finished
                return self
            raise TFConversionError('TensorFlow network object without state in the pickle')
        del self._raw
        state = materialize(state)
        extra = sorted(str(k) for k in state if k not in _STATE_KEYS)
        if extra:
            raise TFConversionError(f'TensorFlow network state with unexpected entries {extra}: refused')
        version = state.get('version')
        if not isinstance(version, int) or isinstance(version, bool):
            raise TFConversionError('TensorFlow network state without a version')
        components = state.get('components', {})
        if not isinstance(components, dict) or not all(
                isinstance(k, str) and isinstance(v, TFNetworkState) for k, v in components.items()):
            raise TFConversionError('TensorFlow network components are not networks: refused')
        others = {k: state.get(k) for k in ('name', 'static_kwargs', 'build_module_src', 'build_func_name', 'variables')}
        for key, value in others.items():
            if not is_plain_data(value):
                raise TFConversionError(f'TensorFlow network {key} holds something that is not plain data '
                                        f'({type(value).__name__}): refused')
        variables = others['variables'] or []
        if not isinstance(variables, (list, tuple)) or not all(
                isinstance(v, (list, tuple)) and len(v) == 2 and isinstance(v[0], str) for v in variables):
            raise TFConversionError('malformed TensorFlow network variables')
        if not isinstance(others['static_kwargs'] or {}, dict):
            raise TFConversionError('malformed TensorFlow network static_kwargs')
        self.version = version
        self.name = str(others['name'] or '')
        self.static_kwargs = dict(others['static_kwargs'] or {})
        self.components = dict(components)
        self.build_func_name = str(others['build_func_name'] or '')
        self.variables = [(name, np.asarray(value, dtype=np.float32)) for name, value in variables]
        for comp in self.components.values():
            comp.finish(materialize)
        return self

    def params(self) -> Dict[str, np.ndarray]:
        """All variables of this network and its components, as ``'component/.../name' -> array``."""
        out: Dict[str, np.ndarray] = {}

        def walk(prefix: str, net: 'TFNetworkState') -> None:
            for name, value in net.variables:
                out[prefix + name] = value
            for name, comp in net.components.items():
                walk(f'{prefix}{name}/', comp)

        walk('', self)
        return out

    def __repr__(self) -> str:
        return f'<TensorFlow network {self.name!r} ({self.build_func_name})>'


# ----------------------------------------------------------------------------
# Static kwargs -> our constructor arguments.

class _Kwargs:
    """Reads TF static kwargs, remembering which were asked for (the rest are unknown)."""

    def __init__(self, net: TFNetworkState, what: str):
        self.values = net.static_kwargs
        self.used = set()
        self.what = what

    def __call__(self, name: str, default=None, none=None):
        self.used.add(name)
        value = self.values.get(name, default)
        return none if value is None else value

    def ignore(self, *names: str) -> None:
        self.used.update(names)

    def check(self) -> None:
        unknown = sorted(set(self.values) - self.used)
        if unknown:
            raise TFConversionError(f'TensorFlow {self.what} has static kwargs this converter does not know: '
                                    f'{", ".join(unknown)}')


def _check_build_func(net: TFNetworkState, accepted: str, what: str) -> None:
    name = net.build_func_name
    if name in _REFUSED_BUILD_FUNCS:
        raise TFConversionError(f'{what} is {_REFUSED_BUILD_FUNCS[name]}: only config-E/F style StyleGAN2 '
                                f'TensorFlow networks can be converted')
    if name != accepted:
        raise TFConversionError(f'{what} is built by {name or "an unnamed function"!r}, not {accepted!r}: '
                                f'cannot convert it')


def _check_version(net: TFNetworkState, what: str) -> None:
    if net.version < MIN_VERSION:
        raise TFConversionError(f'{what} has TensorFlow network state version {net.version}; '
                                f'version {MIN_VERSION} or newer is needed')


def generator_kwargs(net: TFNetworkState) -> dict:
    """``networks.Generator`` arguments for a TF ``G_main`` network."""
    kw = _Kwargs(net, 'generator')
    kwargs = dict(
        z_dim=kw('latent_size', 512), c_dim=kw('label_size', 0), w_dim=kw('dlatent_size', 512),
        img_resolution=kw('resolution', 1024), img_channels=kw('num_channels', 3),
        mapping_kwargs=dict(
            num_layers=kw('mapping_layers', 8), embed_features=kw('label_fmaps'), layer_features=kw('mapping_fmaps'),
            activation=kw('mapping_nonlinearity', 'lrelu'), lr_multiplier=kw('mapping_lrmul', 0.01),
            w_avg_beta=kw('w_avg_beta', 0.995, none=1)),
        synthesis_kwargs=dict(
            channel_base=kw('fmap_base', 16384) * 2, channel_max=kw('fmap_max', 512),
            num_fp16_res=kw('num_fp16_res', 0), conv_clamp=kw('conv_clamp'), architecture=kw('architecture', 'skip'),
            resample_filter=list(kw('resample_kernel', [1, 3, 3, 1])), use_noise=kw('use_noise', True),
            activation=kw('nonlinearity', 'lrelu')),
    )
    # Sampling-time settings and the progressive-growing switch: no effect on the network's function.
    kw.ignore('truncation_psi', 'truncation_cutoff', 'style_mixing_prob', 'structure')
    kw.check()
    return kwargs


def discriminator_kwargs(net: TFNetworkState) -> dict:
    """``networks.Discriminator`` arguments for a TF ``D_stylegan2`` network."""
    kw = _Kwargs(net, 'discriminator')
    activation = kw('nonlinearity', 'lrelu')
    kwargs = dict(
        c_dim=kw('label_size', 0), img_resolution=kw('resolution', 1024), img_channels=kw('num_channels', 3),
        architecture=kw('architecture', 'resnet'), channel_base=kw('fmap_base', 16384) * 2,
        channel_max=kw('fmap_max', 512), num_fp16_res=kw('num_fp16_res', 0), conv_clamp=kw('conv_clamp'),
        cmap_dim=kw('mapping_fmaps'),
        block_kwargs=dict(activation=activation, resample_filter=list(kw('resample_kernel', [1, 3, 3, 1])),
                          freeze_layers=kw('freeze_layers', 0)),
        mapping_kwargs=dict(num_layers=kw('mapping_layers', 0), embed_features=kw('mapping_fmaps'),
                            layer_features=kw('mapping_fmaps'), activation=activation,
                            lr_multiplier=kw('mapping_lrmul', 0.1)),
        epilogue_kwargs=dict(mbstd_group_size=kw('mbstd_group_size'), mbstd_num_channels=kw('mbstd_num_features', 1),
                             activation=activation),
    )
    kw.ignore('structure')
    kw.check()
    return kwargs


# ----------------------------------------------------------------------------
# TF variables -> our state dicts.

def _dense(w: np.ndarray) -> np.ndarray:
    """TF dense weight ``[in, out]`` -> ``[out, in]``."""
    return w.T


def _conv(w: np.ndarray, flip: bool = False) -> np.ndarray:
    """TF kernel ``[kh, kw, in, out]`` -> ``[out, in, kh, kw]``; ``flip`` for TF's transposed convolutions."""
    if flip:
        w = w[::-1, ::-1]
    return w.transpose(3, 2, 0, 1)


def _lod_aliases(params: Dict[str, np.ndarray], pattern: str, layer: str, resolution: int) -> bool:
    """Give ``{layer}_lod{k}/...`` variables (the 'orig' outputs) their ``{r}x{r}/{layer}/...`` names."""
    found = False
    for name, value in list(params.items()):
        match = re.fullmatch(pattern, name)
        if match:
            r = resolution // 2 ** int(match.group(2))
            params[f'{match.group(1)}{r}x{r}/{layer}/{match.group(3)}'] = value
            found = True
    return found


def _modulated(state: dict, ours: str, tf: str, p: Callable[[str], np.ndarray], flip: bool = False,
               noise: Optional[str] = None) -> None:
    state[f'{ours}.weight'] = _conv(p(f'{tf}/weight'), flip)
    state[f'{ours}.bias'] = p(f'{tf}/bias')
    state[f'{ours}.affine.weight'] = _dense(p(f'{tf}/mod_weight'))
    state[f'{ours}.affine.bias'] = p(f'{tf}/mod_bias') + 1
    if noise is not None:
        state[f'{ours}.noise_const'] = p(noise)[0, 0]
        state[f'{ours}.noise_strength'] = p(f'{tf}/noise_strength')


def _getter(params: Dict[str, np.ndarray], what: str) -> Callable[[str], np.ndarray]:
    def get(name: str) -> np.ndarray:
        try:
            return params[name]
        except KeyError:
            raise TFConversionError(f'TensorFlow {what} has no variable {name!r}: not a layout this '
                                    f'converter reads') from None
    return get


def _generator_state(G: networks.Generator, params: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    p = _getter(params, 'generator')
    state = {'mapping.w_avg': p('dlatent_avg')}
    for i in range(G.mapping.num_layers):
        state[f'mapping.fc{i}.weight'] = _dense(p(f'mapping/Dense{i}/weight'))
        state[f'mapping.fc{i}.bias'] = p(f'mapping/Dense{i}/bias')
    if G.c_dim:
        state['mapping.embed.weight'] = _dense(p('mapping/LabelEmbed/weight'))
        state['mapping.embed.bias'] = p('mapping/LabelEmbed/bias')
    ours = G.state_dict()
    for res in G.synthesis.block_resolutions:
        tf, b = f'synthesis/{res}x{res}', f'synthesis.b{res}'
        log2 = int(np.log2(res))
        use_noise = f'{b}.conv1.noise_const' in ours
        if res == 4:
            state[f'{b}.const'] = p(f'{tf}/Const/const')[0]
            _modulated(state, f'{b}.conv1', f'{tf}/Conv', p, noise='synthesis/noise0' if use_noise else None)
        else:
            _modulated(state, f'{b}.conv0', f'{tf}/Conv0_up', p, flip=True,
                       noise=f'synthesis/noise{2 * log2 - 5}' if use_noise else None)
            _modulated(state, f'{b}.conv1', f'{tf}/Conv1', p, noise=f'synthesis/noise{2 * log2 - 4}' if use_noise else None)
        if f'{b}.torgb.weight' in ours:
            _modulated(state, f'{b}.torgb', f'{tf}/ToRGB', p)
        if f'{b}.skip.weight' in ours:
            state[f'{b}.skip.weight'] = _conv(p(f'{tf}/Skip/weight'), flip=True)
    return state


def _discriminator_state(D: networks.Discriminator, params: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    p = _getter(params, 'discriminator')
    ours = D.state_dict()
    state = {}
    for res in D.block_resolutions:
        b, tf = f'b{res}', f'{res}x{res}'
        if f'{b}.fromrgb.weight' in ours:
            state[f'{b}.fromrgb.weight'] = _conv(p(f'{tf}/FromRGB/weight'))
            state[f'{b}.fromrgb.bias'] = p(f'{tf}/FromRGB/bias')
        for i, tf_layer in enumerate(('Conv0', 'Conv1_down')):
            state[f'{b}.conv{i}.weight'] = _conv(p(f'{tf}/{tf_layer}/weight'))
            state[f'{b}.conv{i}.bias'] = p(f'{tf}/{tf_layer}/bias')
        if f'{b}.skip.weight' in ours:
            state[f'{b}.skip.weight'] = _conv(p(f'{tf}/Skip/weight'))
    if 'mapping.embed.weight' in ours:
        state['mapping.embed.weight'] = _dense(p('LabelEmbed/weight'))
        state['mapping.embed.bias'] = p('LabelEmbed/bias')
    i = 0
    while f'mapping.fc{i}.weight' in ours:
        state[f'mapping.fc{i}.weight'] = _dense(p(f'Mapping{i}/weight'))
        state[f'mapping.fc{i}.bias'] = p(f'Mapping{i}/bias')
        i += 1
    for ours_name, tf_name, fn in (('b4.conv', '4x4/Conv', _conv), ('b4.fc', '4x4/Dense0', _dense),
                                   ('b4.out', 'Output', _dense)):
        state[f'{ours_name}.weight'] = fn(p(f'{tf_name}/weight'))
        state[f'{ours_name}.bias'] = p(f'{tf_name}/bias')
    return state


def _load(module: torch.nn.Module, state: Dict[str, np.ndarray], what: str) -> torch.nn.Module:
    """Copy ``state`` into ``module``; every tensor but the fixed resampling filters must be given."""
    full = module.state_dict()
    missing = [k for k in full if k not in state and not k.endswith('resample_filter')]
    if missing:
        raise TFConversionError(f'TensorFlow {what}: no variable for {", ".join(missing[:4])}'
                                f'{" ..." if len(missing) > 4 else ""}')
    for name, value in state.items():
        if name not in full:
            raise TFConversionError(f'TensorFlow {what}: {name} has no counterpart in ours')
        tensor = torch.from_numpy(np.array(value, dtype=np.float32, order="C"))
        if tuple(tensor.shape) != tuple(full[name].shape):
            raise TFConversionError(f'TensorFlow {what}: {name} has shape {list(tensor.shape)}, '
                                    f'ours {list(full[name].shape)}')
        full[name] = tensor
    module.load_state_dict(full, strict=True)
    return module.eval().requires_grad_(False)


def _build(cls, kwargs: dict, what: str) -> torch.nn.Module:
    try:
        return cls(**kwargs)
    except Exception as exc:  # arguments that do not describe a network
        raise TFConversionError(f'cannot build the {what} from the TensorFlow static kwargs: '
                                f'{type(exc).__name__}: {exc}') from None


def convert_generator(net: TFNetworkState) -> networks.Generator:
    """Our ``Generator`` with the weights of a TF ``G_main`` network (``G`` or ``Gs``)."""
    if not isinstance(net, TFNetworkState):
        raise TFConversionError('not a TensorFlow network')
    _check_version(net, 'the generator')
    _check_build_func(net, 'G_main', 'the generator')
    for name, accepted in (('synthesis', 'G_synthesis_stylegan2'), ('mapping', 'G_mapping')):
        if name not in net.components:
            raise TFConversionError(f'the TensorFlow generator has no {name} network')
        _check_build_func(net.components[name], accepted, f'the generator\'s {name} network')
    kwargs = generator_kwargs(net)
    params = net.params()
    if any(name.startswith('mapping/LabelConcat') for name in params):
        raise TFConversionError('the generator is conditioned with LabelConcat (the original TF StyleGAN2 '
                                'repository\'s labels), which has no PyTorch counterpart: cannot convert it')
    if _lod_aliases(params, r'(synthesis/)ToRGB_lod(\d+)/(.*)', 'ToRGB', kwargs['img_resolution']):
        kwargs['synthesis_kwargs']['architecture'] = 'orig'
    G = _build(networks.Generator, kwargs, 'generator')
    return _load(G, _generator_state(G, params), 'generator')


def convert_discriminator(net: TFNetworkState) -> networks.Discriminator:
    """Our ``Discriminator`` with the weights of a TF ``D_stylegan2`` network."""
    if not isinstance(net, TFNetworkState):
        raise TFConversionError('not a TensorFlow network')
    _check_version(net, 'the discriminator')
    _check_build_func(net, 'D_stylegan2', 'the discriminator')
    kwargs = discriminator_kwargs(net)
    params = net.params()
    if _lod_aliases(params, r'()FromRGB_lod(\d+)/(.*)', 'FromRGB', kwargs['img_resolution']):
        kwargs['architecture'] = 'orig'
    D = _build(networks.Discriminator, kwargs, 'discriminator')
    return _load(D, _discriminator_state(D, params), 'discriminator')
