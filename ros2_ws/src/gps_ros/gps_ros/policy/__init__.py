"""The global policy: visuomotor network, distillation, linearisation, export (needs torch)."""
