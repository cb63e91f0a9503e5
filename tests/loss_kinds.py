"""The three elementwise losses (kind "mse", "bce" or "bce_logits") called by kind: on the
CPU kernels in ranvier._C and on the float64 references. Shared by the GPU tests
(test_cuda_ops.py) and the emulated ones (test_cuda_emulated_losses_softmax.py), which run
the same cases against the CPU."""

from references import losses as loss_ref

from ranvier import _C


def cpu_forward(kind, first, target, weight, pos_weight, out, reduction):
    """out = loss(first, target) on `first`'s device (CuPy arrays run the CUDA kernels)."""
    if kind == "mse":
        _C.mse_loss_forward(first, target, out, reduction)
    elif kind == "bce":
        _C.bce_loss_forward(first, target, weight, out, reduction)
    else:
        _C.bce_with_logits_forward(first, target, weight, pos_weight, out, reduction)


def cpu_backward(kind, first, target, weight, pos_weight, dout, dfirst, reduction):
    """dfirst = d loss / d first, given dout."""
    if kind == "mse":
        _C.mse_loss_backward(first, target, dout, dfirst, reduction)
    elif kind == "bce":
        _C.bce_loss_backward(first, target, weight, dout, dfirst, reduction)
    else:
        _C.bce_with_logits_backward(first, target, weight, pos_weight, dout, dfirst, reduction)


def reference_forward(kind, first, target, weight, pos_weight, reduction):
    if kind == "mse":
        return loss_ref.mse(first, target, reduction)
    if kind == "bce":
        return loss_ref.bce(first, target, weight, reduction)
    return loss_ref.bce_logits(first, target, weight, pos_weight, reduction)


def reference_backward(kind, first, target, weight, pos_weight, dout, reduction):
    if kind == "mse":
        return loss_ref.mse_grad(first, target, dout, reduction)
    if kind == "bce":
        return loss_ref.bce_grad(first, target, dout, weight, reduction)
    return loss_ref.bce_logits_grad(first, target, dout, weight, pos_weight, reduction)
