#!/usr/bin/env python3
"""The PyTorch twin of `noisescope bench-train`: the same two training workloads, the same step
(data draw + forward + EDM loss + backward + AdamW + EMA), f32, on this CPU with 2 threads. It
prints steps/s as the median over several timing windows. Run it right before or after
`noisescope bench-train` (both under /work/tools/quiet) and quote the ratio of the two.

Workloads (issue 9; the Rust side is src/train/ and benches/train.rs):
  mlp:  the DEFAULT mlp: c_in x (D = 2) ++ sin/cos(c_noise f_k), 16 f_k log-spaced in [1, 1000]
        (32) ++ class embedding (32, index 0 = null class), 4 x (Linear 256 + SiLU), Linear(D).
        Batch 512 on a 2-D two-class toy (two moons).
  unet: the conv net of src/train/unet.rs at its default configuration on the 8x8 digits, batch
        256: 32 channels at 8x8, 64 at 4x4, group norm (8 groups) + SiLU residual blocks (down,
        middle, up with skip concatenation; average-pool down, nearest up), the embedding
        silu(mlp(noise features) + class embedding) (128) added in every block.
Both: EDM preconditioning (sigma_data from the data), ln sigma ~ N(-1.2, 1.2^2), loss weight
(s^2 + sd^2) / (s sd)^2, class and noise-condition dropout 0.1 (learned null embeddings), AdamW
(lr 1e-3, weight decay 0), EMA of the weights (beta = 0.999).

Run:
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /tmp/peer/bin/python tools/peer_train.py \
        --model mlp --steps 300
"""
import argparse
import math
import os
import platform
import statistics
import time

ap = argparse.ArgumentParser()
ap.add_argument("--model", choices=["mlp", "unet"], default="mlp")
ap.add_argument("--steps", type=int, default=300, help="timed steps (after warm-up)")
ap.add_argument("--windows", type=int, default=5, help="timing windows; the median is printed")
ap.add_argument("--warmup", type=int, default=20)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--batch", type=int, default=0, help="0: 512 for mlp, 256 for unet")
a = ap.parse_args()
for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[v] = str(a.threads)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(a.threads)
torch.manual_seed(0)
P_MEAN, P_STD = -1.2, 1.2
DROP_CLASS, DROP_NOISE = 0.1, 0.1
EMA_BETA = 0.999


class NoiseClassEmbedding(nn.Module):
    """sin/cos(c_noise f_k), 16 f_k log-spaced in [1, 1000], with a learned null vector for a
    dropped noise level; a class embedding whose row 0 is the null class."""

    def __init__(self, classes, class_dim=32):
        super().__init__()
        self.register_buffer("freqs", torch.logspace(0, 3, 16))
        self.null_noise = nn.Parameter(torch.zeros(32))
        self.classes = nn.Embedding(classes + 1, class_dim)

    def forward(self, c_noise, label, noise_dropped):
        arg = c_noise[:, None] * self.freqs[None, :]
        fourier = torch.cat([arg.sin(), arg.cos()], 1)
        fourier = torch.where(noise_dropped[:, None], self.null_noise[None, :], fourier)
        return fourier, self.classes(label)


class Mlp(nn.Module):
    def __init__(self, dim, classes, width=256, depth=4):
        super().__init__()
        self.embed = NoiseClassEmbedding(classes)
        layers, fan_in = [], dim + 64
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width), nn.SiLU()]
            fan_in = width
        layers.append(nn.Linear(fan_in, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x_in, c_noise, label, noise_dropped):
        fourier, cls = self.embed(c_noise, label, noise_dropped)
        return self.net(torch.cat([x_in, fourier, cls], 1))


class ResBlock(nn.Module):
    def __init__(self, c_in, c_out, emb):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb, c_out)
        self.norm2 = nn.GroupNorm(8, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, h, e):
        y = self.conv1(F.silu(self.norm1(h)))
        y = y + self.emb(e)[:, :, None, None]
        y = self.conv2(F.silu(self.norm2(y)))
        return self.skip(h) + y


class Unet(nn.Module):
    """src/train/unet.rs at 8x8: channels (32, 64), a block down at each resolution, average-pool
    between, a middle block, up with the skips concatenated and nearest up-sampling."""

    def __init__(self, channels, side, classes, ch=(32, 64), emb=128):
        super().__init__()
        self.side = side
        self.channels = channels
        self.embed = NoiseClassEmbedding(classes, class_dim=emb)
        self.emb_mlp = nn.Sequential(nn.Linear(32, emb), nn.SiLU(), nn.Linear(emb, emb))
        c0, c1 = ch
        self.conv_in = nn.Conv2d(channels, c0, 3, padding=1)
        self.down0 = ResBlock(c0, c0, emb)
        self.down1 = ResBlock(c0, c1, emb)
        self.middle = ResBlock(c1, c1, emb)
        self.up1 = ResBlock(c1 + c1, c1, emb)
        self.up0 = ResBlock(c1 + c0, c0, emb)
        self.norm_out = nn.GroupNorm(8, c0)
        self.conv_out = nn.Conv2d(c0, channels, 3, padding=1)

    def forward(self, x_in, c_noise, label, noise_dropped):
        fourier, cls = self.embed(c_noise, label, noise_dropped)
        e = F.silu(self.emb_mlp(fourier) + cls)
        h = self.conv_in(x_in.view(-1, self.channels, self.side, self.side))
        skip0 = self.down0(h, e)
        skip1 = self.down1(F.avg_pool2d(skip0, 2), e)
        h = self.middle(skip1, e)
        h = self.up1(torch.cat([h, skip1], 1), e)
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.up0(torch.cat([h, skip0], 1), e)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return out.reshape(x_in.shape[0], -1)


def moons(n, rng):
    """Two interleaved half circles (labels 0, 1), noise 0.05, centred."""
    half = n // 2
    t = rng.uniform(0, math.pi, size=n)
    upper = np.stack([np.cos(t[:half]), np.sin(t[:half])], 1)
    lower = np.stack([1 - np.cos(t[half:]), 0.5 - np.sin(t[half:])], 1)
    pts = np.concatenate([upper, lower]) + rng.normal(0, 0.05, size=(n, 2))
    pts -= pts.mean(0)
    return pts.astype(np.float32), np.repeat([0, 1], [half, n - half])


def digits():
    """The UCI 8x8 digits embedded in the repository, scaled to [-1, 1] as noisescope does."""
    import gzip
    here = os.path.dirname(os.path.abspath(__file__))
    with gzip.open(os.path.join(here, "..", "assets", "uci-digits-8x8.csv.gz"), "rt") as f:
        rows = np.loadtxt(f, delimiter=",")
    return (rows[:, :64] / 8.0 - 1.0).astype(np.float32), rows[:, 64].astype(np.int64)


rng = np.random.default_rng(0)
if a.model == "mlp":
    data, labels = moons(20000, rng)
    batch = a.batch or 512
    model = Mlp(2, 2)
else:
    data, labels = digits()
    batch = a.batch or 256
    model = Unet(1, 8, 10)
data_t, labels_t = torch.from_numpy(data), torch.from_numpy(labels)
sigma_data = float(data.std())
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
ema = [p.detach().clone() for p in model.parameters()]
params = list(model.parameters())


def step():
    idx = torch.randint(0, data_t.shape[0], (batch,))
    y = data_t[idx]
    label = labels_t[idx] + 1
    label = torch.where(torch.rand(batch) < DROP_CLASS, torch.zeros_like(label), label)
    noise_dropped = torch.rand(batch) < DROP_NOISE
    sigma = (torch.randn(batch, 1) * P_STD + P_MEAN).exp()
    x = y + torch.randn_like(y) * sigma
    s2 = sigma * sigma + sigma_data**2
    c_skip = sigma_data**2 / s2
    c_out = sigma * sigma_data / s2.sqrt()
    c_in = 1 / s2.sqrt()
    c_noise = sigma.log().flatten() / 4
    f = model(c_in * x, c_noise, label, noise_dropped)
    d = c_skip * x + c_out * f
    weight = s2 / (sigma * sigma_data) ** 2
    loss = (weight * (d - y) ** 2).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
        torch._foreach_lerp_(ema, params, 1 - EMA_BETA)
    return loss


for _ in range(a.warmup):
    step()
per_window = max(1, a.steps // a.windows)
rates = []
for _ in range(a.windows):
    t = time.perf_counter()
    for _ in range(per_window):
        step()
    rates.append(per_window / (time.perf_counter() - t))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
           platform.processor())
n_params = sum(p.numel() for p in params)
print(f"pytorch {a.model}: {statistics.median(rates):.1f} steps/s (median of {a.windows} windows of "
      f"{per_window} steps; min {min(rates):.1f}, max {max(rates):.1f}), batch {batch}, "
      f"{n_params} parameters, {a.threads} threads, torch {torch.__version__}, {cpu}")
