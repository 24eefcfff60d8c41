"""CLI tests share the root conftest (torchvision quirk, offline HF); nothing extra here."""
