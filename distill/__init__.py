"""Bort-style: sub-architecture search against measured latency, extraction from the teacher, distillation."""
