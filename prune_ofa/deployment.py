"""What deploying a Prune OFA model needs (``bert.deployment``): the INT8 ranges its
quantization-aware training learned, so ``deploy.export`` writes an INT8 ONNX with them."""
from bert import deployment
from prune_ofa import quantize


class PruneOfaDeployment(deployment.Deployment):
    name = "prune_ofa"

    def int8_ranges(self, bert_config, values):
        if not bert_config.extra.get(quantize.CONFIG_KEY):
            return None
        found = {}
        for (scope, kind), (low, high) in quantize.learned_ranges(values).items():
            scale, zero_point = quantize.nudged_scale_zero_point(low, high)
            found[quantize.kernel_of_range(scope, kind, values)] = deployment.Int8Range(
                float(scale), zero_point)
        return found


DEPLOYMENT = PruneOfaDeployment()
