# Hugging Face transformers' LlamaModel forward+backward tokens/s on the same GPU and shapes as bench/gpu_bench
# (TinyLlama-1.1B: hidden 2048, 22 layers, 32 heads, 4 KV heads, intermediate 5632; 64 sequences of 33 tokens),
# bf16 autocast, MFU against a bf16 matmul measured here. Prints one Markdown table row (no header).
import sys, time
try:
    import torch
    from transformers import LlamaConfig, LlamaModel
except Exception as e:  # noqa: BLE001
    print(f"| transformers LlamaModel | - | - | - | not run: {type(e).__name__}: {e} | - | - | - |")
    sys.exit(0)
layers = int(sys.argv[1]) if len(sys.argv) > 1 else 22
dev = "cuda"
cfg = LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=layers, num_attention_heads=32,
                  num_key_value_heads=4, vocab_size=32000, attn_implementation="sdpa")
m = LlamaModel(cfg).to(dev)
ids = torch.randint(1, 32000, (64, 33), device=dev)
def step():
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = m(input_ids=ids).last_hidden_state
    out.float().pow(2).mean().backward()
    m.zero_grad(set_to_none=True)
def timed(f, min_s=3.0):
    f(); torch.cuda.synchronize(); n = 0; t0 = time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < min_s:
        f(); n += 1; torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n
t = timed(step)
params = sum(p.numel() for n_, p in m.named_parameters() if "embed_tokens" not in n_)
tok = ids.numel()
flops = (6.0 * params + 6.0 * 2.0 * layers * 33 * 2048) * tok
a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
peak = 2.0 * 8192 ** 3 / timed(lambda: a @ a)
print(f"| transformers LlamaModel (sdpa) | {torch.cuda.get_device_name()} | {layers} | {tok} | {tok / t:.0f} | "
      f"{flops / t / 1e12:.1f} | {peak / 1e12:.1f} | {100 * flops / t / peak:.1f}% |")
