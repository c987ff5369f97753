// The one TORCH_LIBRARY block: every op schema of the fused namespace is declared here, and
// each op's kernels are registered beside its implementation in csrc/ops/.

#include <torch/library.h>

TORCH_LIBRARY(fused, m) {
  m.def("softmax_bias_sigmoid(Tensor x, Tensor bias, float scale) -> Tensor");
  // The forward that autograd runs: out, and the softmax statistics the backward reads.
  m.def("softmax_bias_sigmoid_forward(Tensor x, Tensor bias, float scale) "
        "-> (Tensor out, Tensor softmax_stats)");
  m.def(
      "conv_transpose2d_softmax_bias_sigmoid(Tensor x, Tensor weight, Tensor? conv_bias, "
      "Tensor bias, int[2] stride, int[2] padding, int[2] output_padding, float scale) -> Tensor");
  // Its gradients in x and bias, recomputed from x and, where given, the forward's statistics.
  m.def("softmax_bias_sigmoid_backward(Tensor grad_out, Tensor x, Tensor bias, float scale, "
        "Tensor? softmax_stats=None) -> (Tensor grad_x, Tensor grad_bias)");
  // Diagnostics: on a CPU tensor, every kernel image the library holds; on a CUDA tensor,
  // the image each kernel variant runs from on that tensor's device.
  m.def("kernel_images(Tensor device_probe) -> str[]");
  // Which kernel softmax_bias_sigmoid(x, bias, scale) runs for these tensors, and from which image.
  m.def("explain_softmax_bias_sigmoid(Tensor x, Tensor bias) -> str");
}
