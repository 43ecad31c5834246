#!/usr/bin/env python3
"""The SD 1.5 UNet forward in plain PyTorch, for a side-by-side CPU timing with fasterdiffusion.

The network mirrors diffusers 0.23's UNet2DConditionModel with SD 1.5's config (same layers, same
shapes, 859,520,964 parameters) and, as diffusers does on PyTorch < 2, computes attention with
baddbmm + softmax. Weights are random: only the time matters here.

Usage: torch_unet.py [--threads 2] [--batch 2] [--size 64] [--repeat 3] [--warmup 1]
                     [--device cpu|cuda] [--dtype fp32|fp16|bf16] [--sdpa]
Prints one line: torch unet forward: median M s, min m s over N runs (threads T, torch V)
"""
import argparse
import math
import statistics
import time

import torch
from torch import nn
import torch.nn.functional as F

USE_SDPA = False


class Resnet(nn.Module):
    def __init__(self, cin, cout, temb=1280, groups=32):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-5)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class Attention(nn.Module):
    def __init__(self, dim, ctx_dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(ctx_dim, dim, bias=False)
        self.to_v = nn.Linear(ctx_dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def split(self, t):
        b, l, c = t.shape
        return t.reshape(b, l, self.heads, c // self.heads).permute(0, 2, 1, 3).reshape(b * self.heads, l, -1)

    def forward(self, x, ctx=None):
        ctx = x if ctx is None else ctx
        q, k, v = self.split(self.to_q(x)), self.split(self.to_k(ctx)), self.split(self.to_v(ctx))
        if USE_SDPA:
            o = F.scaled_dot_product_attention(q[None], k[None], v[None], scale=self.scale)[0]
        else:
            scores = torch.baddbmm(torch.empty(q.shape[0], q.shape[1], k.shape[1], device=q.device, dtype=q.dtype),
                                   q, k.transpose(1, 2), beta=0, alpha=self.scale)
            o = torch.bmm(scores.softmax(dim=-1), v)
        b = x.shape[0]
        o = o.reshape(b, self.heads, o.shape[1], -1).permute(0, 2, 1, 3).reshape(b, o.shape[1], -1)
        return self.to_out(o)


class Block(nn.Module):
    def __init__(self, dim, ctx_dim, heads):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn1 = Attention(dim, dim, heads)
        self.attn2 = Attention(dim, ctx_dim, heads)
        self.proj = nn.Linear(dim, 8 * dim)
        self.out = nn.Linear(4 * dim, dim)

    def forward(self, x, ctx):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), ctx) + x
        a, gate = self.proj(self.norm3(x)).chunk(2, dim=-1)
        return self.out(a * F.gelu(gate)) + x


class Transformer(nn.Module):
    def __init__(self, dim, ctx_dim=768, heads=8):
        super().__init__()
        self.norm = nn.GroupNorm(32, dim, eps=1e-6)
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.block = Block(dim, ctx_dim, heads)
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x, ctx):
        b, c, h, w = x.shape
        t = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(b, h * w, c)
        t = self.block(t, ctx)
        return self.proj_out(t.reshape(b, h, w, c).permute(0, 3, 1, 2)) + x


class UNet(nn.Module):
    def __init__(self, ch=(320, 640, 1280, 1280)):
        super().__init__()
        self.conv_in = nn.Conv2d(4, ch[0], 3, padding=1)
        self.time_1 = nn.Linear(ch[0], 4 * ch[0])
        self.time_2 = nn.Linear(4 * ch[0], 4 * ch[0])
        self.down = nn.ModuleList()
        skip_ch = [ch[0]]
        cin = ch[0]
        for i, c in enumerate(ch):
            layers = nn.ModuleList()
            for j in range(2):
                layers.append(nn.ModuleList([Resnet(cin if j == 0 else c, c)] + ([Transformer(c)] if i < 3 else [])))
                skip_ch.append(c)
            down = nn.Conv2d(c, c, 3, stride=2, padding=1) if i < 3 else None
            if down is not None:
                skip_ch.append(c)
            self.down.append(nn.ModuleList([layers] + ([down] if down is not None else [])))
            cin = c
        self.mid = nn.ModuleList([Resnet(ch[-1], ch[-1]), Transformer(ch[-1]), Resnet(ch[-1], ch[-1])])
        self.up = nn.ModuleList()
        prev = ch[-1]
        for i, c in enumerate(reversed(ch)):
            layers = nn.ModuleList()
            for j in range(3):
                s = skip_ch.pop()
                layers.append(nn.ModuleList([Resnet((prev if j == 0 else c) + s, c)] + ([Transformer(c)] if i > 0 else [])))
            up = nn.Conv2d(c, c, 3, padding=1) if i < 3 else None
            self.up.append(nn.ModuleList([layers] + ([up] if up is not None else [])))
            prev = c
        self.norm_out = nn.GroupNorm(32, ch[0], eps=1e-5)
        self.conv_out = nn.Conv2d(ch[0], 4, 3, padding=1)

    def forward(self, x, t, ctx):
        half = 160
        freq = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=x.device) / half)
        arg = t[:, None].float() * freq[None]
        temb = self.time_2(F.silu(self.time_1(torch.cat([arg.cos(), arg.sin()], dim=-1).to(x.dtype))))
        h = self.conv_in(x)
        skips = [h]
        for blk in self.down:
            for layer in blk[0]:
                h = layer[0](h, temb)
                if len(layer) > 1:
                    h = layer[1](h, ctx)
                skips.append(h)
            if len(blk) > 1:
                h = blk[1](h)
                skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, temb), ctx), temb)
        for blk in self.up:
            for layer in blk[0]:
                h = layer[0](torch.cat([h, skips.pop()], dim=1), temb)
                if len(layer) > 1:
                    h = layer[1](h, ctx)
            if len(blk) > 1:
                h = blk[1](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    ap.add_argument("--sdpa", action="store_true", help="attention through F.scaled_dot_product_attention")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[a.dtype]
    global USE_SDPA
    USE_SDPA = a.sdpa
    model = UNet().eval().to(device=a.device, dtype=dtype)
    params = sum(p.numel() for p in model.parameters())
    x = torch.randn(a.batch, 4, a.size, a.size, device=a.device, dtype=dtype)
    ctx = torch.randn(a.batch, 77, 768, device=a.device, dtype=dtype)
    t = torch.full((a.batch,), 801, device=a.device)
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    times = []
    with torch.inference_mode():
        for _ in range(a.warmup):
            model(x, t, ctx)
        sync()
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            model(x, t, ctx)
            sync()
            times.append(time.perf_counter() - t0)
    print(f"torch parameters: {params}")
    print(f"torch unet forward: median {statistics.median(times):.4f} s, min {min(times):.4f} s over {a.repeat} runs "
          f"(threads {a.threads}, torch {torch.__version__}, {a.device}, {a.dtype}{', sdpa' if a.sdpa else ''})")


if __name__ == "__main__":
    main()
