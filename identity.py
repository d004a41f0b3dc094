"""Face identity: FaceNet embeddings, the face crop they need, and the identity loss and score.

The network is FaceNet's Inception-ResNet-v1 as trained on VGGFace2 and published by the
facenet-pytorch project (MIT licence) as a PyTorch state dict at ``FACENET_URL``. It is
rebuilt here with the same module names and shapes, so that file loads with ``strict=True``;
its classifier ``logits.*`` (8631 VGGFace2 identities) is loaded and never used. The weights
are downloaded once into torch's hub cache, or read from a local file (``--id-weights FILE``).

Input: a 160x160 RGB face crop ``x`` in ``[0, 1]``, standardized as FaceNet was trained,
``(255 x - 127.5) / 128``. Output: the embedding ``[N, 512]``, L2-normalized, so the cosine
similarity of two faces is the dot product of their embeddings, and the squared Euclidean
distance FaceNet papers threshold is ``2 - 2 cos``.

Crop: FaceNet's training and evaluation crops are MTCNN face boxes plus a margin, resized to
160x160. Here the crop is taken differentiably from the generator's image with
``landmark_loss.crop_faces`` (bilinear ``grid_sample``), from one box computed once from the
68 landmarks of a reference face (the look, or the first frame): see ``identity_box``.
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from dnnlib.util import UserError
from landmark_loss import NUM_LANDMARKS, FaceBox, crop_faces
from torch_utils import misc

FACENET_URL = 'https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt'
WEIGHTS_OPTION = '--id-weights'
CROP_SIZE = 160
EMBEDDING_DIM = 512
VGGFACE2_CLASSES = 8631
# facenet-pytorch evaluates these weights on LFW with MTCNN(image_size=160, margin=14).
DEFAULT_MARGIN = 14.0


# ----------------------------------------------------------------------------
# The network (Inception-ResNet-v1). Attribute names are those of the published state dict.

class ConvBN(torch.nn.Module):
    """Convolution without bias, batch norm (eps 1e-3, as in the TensorFlow original), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=False)
        self.bn = torch.nn.BatchNorm2d(out_channels, eps=1e-3, momentum=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _branch(in_channels: int, spec: Sequence[tuple]) -> torch.nn.Module:
    """A chain of ``ConvBN(out, kernel, stride, padding)``; one layer stands alone, several form a Sequential."""
    layers, channels = [], in_channels
    for out, kernel, stride, padding in spec:
        layers.append(ConvBN(channels, out, kernel, stride, padding))
        channels = out
    return layers[0] if len(layers) == 1 else torch.nn.Sequential(*layers)


class Mixed(torch.nn.Module):
    """Parallel branches ``branch0, branch1, ...`` concatenated over channels.

    Residual form (``project`` set): a 1x1 convolution ``conv2d`` (with bias) maps the
    concatenation back to the input width, scaled by ``scale`` and added to the input, then a
    ReLU unless ``relu=False``. Reduction form: a last 3x3 stride-2 max-pool branch (``pool``).
    """

    def __init__(self, in_channels: int, branches: Sequence[Sequence[tuple]], project: bool = False,
                 scale: float = 1.0, relu: bool = True, pool: bool = False):
        super().__init__()
        for i, spec in enumerate(branches):
            setattr(self, f'branch{i}', _branch(in_channels, spec))
        self.num_conv_branches = len(branches)
        self.pool = pool
        self.scale = scale
        self.relu = relu
        self.residual = project
        if project:
            width = sum(spec[-1][0] for spec in branches)
            self.conv2d = torch.nn.Conv2d(width, in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [getattr(self, f'branch{i}')(x) for i in range(self.num_conv_branches)]
        if self.pool:
            outs.append(F.max_pool2d(x, 3, stride=2))
        out = torch.cat(outs, dim=1)
        if self.residual:
            out = x + self.scale * self.conv2d(out)
        return F.relu(out) if self.relu else out


def _block35(scale: float) -> Mixed:      # 35x35 grid in the original (17x17 for 160 inputs), 256 channels
    return Mixed(256, [[(32, 1, 1, 0)],
                       [(32, 1, 1, 0), (32, 3, 1, 1)],
                       [(32, 1, 1, 0), (32, 3, 1, 1), (32, 3, 1, 1)]], project=True, scale=scale)


def _block17(scale: float) -> Mixed:      # 896 channels
    return Mixed(896, [[(128, 1, 1, 0)],
                       [(128, 1, 1, 0), (128, (1, 7), 1, (0, 3)), (128, (7, 1), 1, (3, 0))]], project=True, scale=scale)


def _block8(scale: float, relu: bool = True) -> Mixed:   # 1792 channels
    return Mixed(1792, [[(192, 1, 1, 0)],
                        [(192, 1, 1, 0), (192, (1, 3), 1, (0, 1)), (192, (3, 1), 1, (1, 0))]],
                 project=True, scale=scale, relu=relu)


class InceptionResnetV1(torch.nn.Module):
    """FaceNet's Inception-ResNet-v1: standardized crops ``[N, 3, 160, 160]`` -> embeddings ``[N, 512]`` (unit norm).

    ``num_classes``: rows of the (unused) classifier ``logits``, 8631 for the VGGFace2 weights.
    """

    def __init__(self, num_classes: int = VGGFACE2_CLASSES):
        super().__init__()
        self.conv2d_1a = ConvBN(3, 32, 3, stride=2)
        self.conv2d_2a = ConvBN(32, 32, 3)
        self.conv2d_2b = ConvBN(32, 64, 3, padding=1)
        self.conv2d_3b = ConvBN(64, 80, 1)              # after a 3x3 stride-2 max-pool
        self.conv2d_4a = ConvBN(80, 192, 3)
        self.conv2d_4b = ConvBN(192, 256, 3, stride=2)
        self.repeat_1 = torch.nn.Sequential(*[_block35(0.17) for _ in range(5)])
        self.mixed_6a = Mixed(256, [[(384, 3, 2, 0)],
                                    [(192, 1, 1, 0), (192, 3, 1, 1), (256, 3, 2, 0)]], pool=True, relu=False)
        self.repeat_2 = torch.nn.Sequential(*[_block17(0.10) for _ in range(10)])
        self.mixed_7a = Mixed(896, [[(256, 1, 1, 0), (384, 3, 2, 0)],
                                    [(256, 1, 1, 0), (256, 3, 2, 0)],
                                    [(256, 1, 1, 0), (256, 3, 1, 1), (256, 3, 2, 0)]], pool=True, relu=False)
        self.repeat_3 = torch.nn.Sequential(*[_block8(0.20) for _ in range(5)])
        self.block8 = _block8(1.0, relu=False)
        self.last_linear = torch.nn.Linear(1792, EMBEDDING_DIM, bias=False)
        self.last_bn = torch.nn.BatchNorm1d(EMBEDDING_DIM, eps=1e-3, momentum=0.1)
        self.logits = torch.nn.Linear(EMBEDDING_DIM, num_classes)  # in the weight file; not used

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.conv2d_4b(self.conv2d_4a(self.conv2d_3b(x)))
        x = self.repeat_3(self.mixed_7a(self.repeat_2(self.mixed_6a(self.repeat_1(x)))))
        x = self.block8(x).mean(dim=[2, 3])             # global average pool (dropout: identity in eval)
        return F.normalize(self.last_bn(self.last_linear(x)), dim=1)


# ----------------------------------------------------------------------------
# Weights.

def cached_weights_path() -> str:
    """Where ``torch.hub`` keeps (or would keep) the downloaded FaceNet weights."""
    return os.path.join(torch.hub.get_dir(), 'checkpoints', os.path.basename(FACENET_URL))


def weights_available(weights: Optional[str] = None) -> bool:
    """True when a local file was given or the official weights are already in the hub cache (no download)."""
    return weights is not None or os.path.isfile(cached_weights_path())


def identity_requested(id_weight: float = 0.0, weights: Optional[str] = None, no_identity: bool = False) -> bool:
    """Whether a command should load FaceNet: for the term (``id_weight > 0``) or for the score.

    The score is computed whenever the weights are at hand without a download (``--id-weights``
    given, or already cached); ``--no-identity`` skips the network entirely and contradicts a
    positive ``--id_weight``.
    """
    if id_weight < 0 or not np.isfinite(id_weight):
        raise UserError(f'--id_weight must be a finite number >= 0, got {id_weight}')
    if no_identity:
        if id_weight > 0:
            raise UserError('--no-identity contradicts --id_weight > 0 (the identity term needs the network)')
        return False
    return id_weight > 0 or weights_available(weights)


def score_only(id_weight: float = 0.0, weights: Optional[str] = None) -> bool:
    """Whether FaceNet would be loaded only for the identity score, from the hub cache (no term, no
    ``--id-weights``): a damaged cached copy then costs the score, not the run."""
    return not id_weight and weights is None


def load_facenet(weights: Optional[str] = None, device: Union[str, torch.device] = 'cpu') -> InceptionResnetV1:
    """FaceNet with weights from ``weights`` (a state dict file) or ``FACENET_URL`` via the hub cache.

    Every mismatch between the file and the network is a one-line ``UserError``. Returns the
    network in eval mode, its parameters frozen.
    """
    state, source = misc.load_state_dict(weights, FACENET_URL, WEIGHTS_OPTION, 'FaceNet identity weights')
    logits = state.get('logits.weight')
    num_classes = int(logits.shape[0]) if isinstance(logits, torch.Tensor) and logits.ndim == 2 else VGGFACE2_CLASSES
    net = InceptionResnetV1(num_classes)
    expected = net.state_dict()
    # Files written before batch norm counted its batches lack ``num_batches_tracked``; it is never read in eval.
    state = dict(state)
    for key, value in expected.items():
        if key.endswith('num_batches_tracked') and key not in state:
            state[key] = torch.zeros_like(value)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f'{len(missing)} of its {len(expected)} tensors missing (first: {missing[0]})')
        if unexpected:
            parts.append(f'{len(unexpected)} unexpected (first: {unexpected[0]})')
        raise UserError(f'{WEIGHTS_OPTION}: {source} is not a FaceNet Inception-ResNet-v1 state dict: {", ".join(parts)}')
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise UserError(f'{WEIGHTS_OPTION}: {source}: {key} has shape {list(state[key].shape)}, '
                            f'FaceNet expects {list(value.shape)}')
    net.load_state_dict(state, strict=True)
    return net.eval().requires_grad_(False).to(device)


# ----------------------------------------------------------------------------
# The face box and crop.

def identity_box(points: np.ndarray, width: int, height: Optional[int] = None,
                 margin: float = DEFAULT_MARGIN, crop_size: int = CROP_SIZE) -> FaceBox:
    """The square box FaceNet's crop is taken from, for a face with 68 landmarks ``[68, 2]`` (image pixels).

    The rule, imitating how FaceNet's crops were made (an MTCNN face box, enlarged by a margin
    given in pixels of the final 160x160 crop, as facenet-pytorch's ``extract_face`` does):

    1. the landmarks' bounding box stands for the MTCNN box (it spans jaw to jaw and eyebrows to
       chin; MTCNN's box reaches a little further up the forehead);
    2. it is made square around its centre, with the longer of its two sides;
    3. the side ``s`` grows by ``margin`` crop pixels: ``s * crop_size / (crop_size - margin)``
       (margin 14 on 160, facenet-pytorch's LFW setting: a factor of 1.096).

    As in ``FaceBox.from_landmarks`` the side is clamped to ``[S/4, 2S]`` (``S`` the image's
    shorter side) and the centre to the image, so meaningless landmarks still give a usable box.
    On FFHQ-aligned images (every generator output) the box is nearly the same for every face.
    """
    height = width if height is None else height
    if not 0 <= margin < crop_size:
        raise ValueError(f'margin must be in [0, {crop_size}), got {margin}')
    pts = np.asarray(points, dtype=np.float64).reshape(NUM_LANDMARKS, 2)
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    side = max(x1 - x0, y1 - y0) * crop_size / (crop_size - margin)
    short = min(width, height)
    side = float(np.clip(side, short / 4, short * 2))
    cx = float(np.clip((x0 + x1) / 2, 0, width))
    cy = float(np.clip((y0 + y1) / 2, 0, height))
    return FaceBox(cx, cy, side)


def ffhq_landmarks(resolution: int) -> np.ndarray:
    """68 landmarks ``[68, 2]`` of a typical frontal face where FFHQ alignment puts it.

    Built from average proportions in units of the eye-centre distance ``d``: FFHQ alignment
    (``face_align.ffhq_quad``) makes the image side ``4 d`` and puts the eye midpoint ``0.1``
    eye-to-mouth distances above the image centre. The face: eye-to-mouth ``1.05 d``, jaw
    ``2.1 d`` wide from eye level to the chin ``1.7 d`` below the eyes, eyebrows ``0.35-0.45 d``
    above them. For boxes where no landmarks of the face are at hand (``ffhq_box``) and tests.
    """
    d, etm = 1.0, 1.05
    t = np.linspace(0, 1, 17)
    jaw = np.stack([-1.05 * np.cos(np.pi * t), 0.1 + 1.6 * np.sin(np.pi * t)], axis=1)
    s = np.linspace(0, 1, 5)
    brow_left = np.stack([-0.95 + 0.75 * s, -0.35 - 0.1 * np.sin(np.pi * s)], axis=1)
    brow_right = brow_left[::-1] * [-1, 1]
    nose_bridge = np.stack([np.zeros(4), np.linspace(0.0, 0.6, 4)], axis=1)
    lower_nose = np.array([[-0.25, 0.7], [-0.12, 0.74], [0, 0.76], [0.12, 0.74], [0.25, 0.7]])
    eye_left = np.array([[-0.725, 0], [-0.6, -0.075], [-0.4, -0.075], [-0.275, 0], [-0.4, 0.075], [-0.6, 0.075]])
    eye_right = np.array([[0.275, 0], [0.4, -0.075], [0.6, -0.075], [0.725, 0], [0.6, 0.075], [0.4, 0.075]])
    outer_lip = np.array([[-0.42, 0], [-0.28, -0.1], [-0.12, -0.15], [0, -0.13], [0.12, -0.15], [0.28, -0.1],
                          [0.42, 0], [0.28, 0.12], [0.12, 0.17], [0, 0.18], [-0.12, 0.17], [-0.28, 0.12]]) + [0, etm]
    inner_lip = np.array([[-0.32, 0], [-0.12, -0.05], [0, -0.05], [0.12, -0.05],
                          [0.32, 0], [0.12, 0.05], [0, 0.05], [-0.12, 0.05]]) + [0, etm]
    pts = np.concatenate([jaw, brow_left, brow_right, nose_bridge, lower_nose, eye_left, eye_right,
                          outer_lip, inner_lip]) * d
    scale = resolution / 4.0                                      # image side = 4 d
    eye_mid = np.array([resolution / 2, resolution / 2 - 0.1 * etm * scale])
    return pts * scale + eye_mid


def ffhq_box(resolution: int, margin: float = DEFAULT_MARGIN) -> FaceBox:
    """``identity_box`` of ``ffhq_landmarks``: the box for FFHQ-aligned faces whose landmarks are not at hand."""
    return identity_box(ffhq_landmarks(resolution), resolution, resolution, margin)


def box_from_image(fan: torch.nn.Module, image: torch.Tensor, margin: float = DEFAULT_MARGIN) -> FaceBox:
    """``identity_box`` of the landmarks FAN finds on ``image [1, 3, H, W]`` in ``[-1, 1]`` (FAN runs twice)."""
    import image_io
    from face_landmarks import FaceLandmarks
    misc.assert_shape(image, [1, 3, None, None])
    points, _ = FaceLandmarks(fan).landmarks(image_io.to_uint8(image[0]), refinements=1)
    return identity_box(points, int(image.shape[3]), int(image.shape[2]), margin)


def standardize(crops: torch.Tensor) -> torch.Tensor:
    """FaceNet's fixed standardization of crops in ``[0, 1]``: ``(255 x - 127.5) / 128``."""
    return (crops * 255 - 127.5) / 128


def embed(net: torch.nn.Module, images: torch.Tensor, box: Union[FaceBox, Sequence[FaceBox]],
          crop_size: int = CROP_SIZE) -> torch.Tensor:
    """Unit embeddings ``[N, 512]`` of the faces in ``images [N, 3, H, W]`` (``[-1, 1]``), differentiable.

    ``box``: one box for all images, or one per image.
    """
    misc.assert_shape(images, [None, 3, None, None])
    if isinstance(box, FaceBox):
        crops = crop_faces(images, box, crop_size)
    else:
        boxes = list(box)
        if len(boxes) != images.shape[0]:
            raise ValueError(f'{len(boxes)} boxes for {images.shape[0]} images')
        crops = torch.cat([crop_faces(images[i:i + 1], b, crop_size) for i, b in enumerate(boxes)])
    out = net(standardize(crops))
    misc.assert_shape(out, [images.shape[0], EMBEDDING_DIM])
    return out


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity ``[N]`` of unit embeddings ``[N, D]`` and ``[N or 1, D]``."""
    return (a * b).sum(dim=1)


@torch.no_grad()
def identity_similarity(net: torch.nn.Module, a: torch.Tensor, b: torch.Tensor,
                        box: FaceBox, crop_size: int = CROP_SIZE) -> torch.Tensor:
    """Cosine similarity ``[N]`` of the faces in ``a [N, 3, H, W]`` and ``b [N or 1, 3, H, W]`` (for reports).

    1 for the same image; ``similarity_to_squared_distance`` converts to FaceNet's distance.
    """
    return cosine(embed(net, a, box, crop_size), embed(net, b, box, crop_size)).float()


def similarity_to_squared_distance(cos: Union[float, torch.Tensor]):
    """Squared Euclidean distance of unit embeddings, ``2 - 2 cos`` (what FaceNet thresholds)."""
    return 2 - 2 * cos


# ----------------------------------------------------------------------------
# The loss.

class IdentityLoss(torch.nn.Module):
    """``1 - cos(E(crop(x)), E(crop(anchor)))`` for each image: the identity term of an objective.

    ``anchor``: ``[A, 3, H, W]`` in ``[-1, 1]`` (one anchor, or one per pair); its embeddings
    are computed once, without gradients. ``box``: one ``FaceBox`` (used for anchors and images
    alike) or one per anchor. ``forward(images [N, 3, H, W], index=None) -> [N]``: image ``i``
    is compared with anchor ``index[i]`` (``index`` a LongTensor ``[N]``, as
    ``optimization.project`` passes it); with a single anchor, every image is compared with it
    and ``index`` is ignored. ``similarity`` gives the
    cosine itself. ``set_anchor`` replaces the anchors (free animation: the first frame's result).
    """

    def __init__(self, net: torch.nn.Module, anchor: torch.Tensor, box: Union[FaceBox, Sequence[FaceBox]],
                 crop_size: int = CROP_SIZE):
        super().__init__()
        self.net = net
        self.crop_size = crop_size
        self.register_buffer('anchor_embedding', torch.zeros([0, EMBEDDING_DIM]))
        self.set_anchor(anchor, box)

    @torch.no_grad()
    def set_anchor(self, anchor: torch.Tensor, box: Union[FaceBox, Sequence[FaceBox], None] = None) -> None:
        """New anchor images ``[A, 3, H, W]`` and boxes (default: the current box, when all anchors shared one)."""
        misc.assert_shape(anchor, [None, 3, None, None])
        if box is not None:
            self.boxes: List[FaceBox] = [box] * anchor.shape[0] if isinstance(box, FaceBox) else list(box)
        elif all(b == self.boxes[0] for b in self.boxes):         # one shared box: keep it for any count
            self.boxes = self.boxes[:1] * anchor.shape[0]
        if len(self.boxes) != anchor.shape[0]:
            raise ValueError(f'{len(self.boxes)} boxes for {anchor.shape[0]} anchors')
        self.anchor_embedding = embed(self.net, anchor.detach(), self._box_arg(self.boxes), self.crop_size).detach()

    @staticmethod
    def _box_arg(boxes: List[FaceBox]):
        return boxes[0] if all(b == boxes[0] for b in boxes) else boxes

    def _select(self, n: int, index: Optional[torch.Tensor]):
        num_anchors = self.anchor_embedding.shape[0]
        if num_anchors == 1:                                      # one anchor for every latent, whatever index says
            return self.anchor_embedding, self.boxes[0]
        if index is None:
            raise ValueError(f'{num_anchors} anchors: pass index to say which one each image is compared with')
        idx = index.reshape(-1).tolist()
        if len(idx) != n:
            raise ValueError(f'index has {len(idx)} entries for {n} images')
        return self.anchor_embedding[index.reshape(-1).to(self.anchor_embedding.device)], \
            self._box_arg([self.boxes[i] for i in idx])

    def similarity(self, images: torch.Tensor, index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Cosine similarity ``[N]`` of each image's face to its anchor (differentiable)."""
        anchor, box = self._select(images.shape[0], index)
        return cosine(embed(self.net, images, box, self.crop_size), anchor)

    def forward(self, images: torch.Tensor, index: Optional[torch.Tensor] = None) -> torch.Tensor:
        return 1 - self.similarity(images, index)

    def extra_repr(self) -> str:
        return f'anchors={self.anchor_embedding.shape[0]}, box={self.boxes[0]}, crop_size={self.crop_size}'

