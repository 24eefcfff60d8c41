"""Tiny Hugging Face models built from configs (offline), with example inputs."""

from __future__ import annotations

import torch


def bert():
    import transformers as T

    cfg = T.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=64, vocab_size=64, max_position_embeddings=16,
                       num_labels=3)
    return T.BertForSequenceClassification(cfg), {"input_ids": torch.randint(0, 64, (2, 6))}


def gpt2():
    import transformers as T

    cfg = T.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=64, n_positions=16,
                       bos_token_id=0, eos_token_id=0)
    return T.GPT2LMHeadModel(cfg), {"input_ids": torch.randint(0, 64, (2, 6)),
                                    "use_cache": False}


def llama():
    import transformers as T

    cfg = T.LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, intermediate_size=64, vocab_size=64,
                        head_dim=8)
    return T.LlamaForCausalLM(cfg), {"input_ids": torch.randint(0, 64, (2, 6)),
                                     "use_cache": False}


def vit():
    import transformers as T

    cfg = T.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, image_size=16, patch_size=4, num_labels=3)
    return T.ViTForImageClassification(cfg), {"pixel_values": torch.randn(2, 3, 16, 16)}


MODELS = {"bert": bert, "gpt2": gpt2, "llama": llama, "vit": vit}
