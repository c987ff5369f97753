// Runs a TorchScript module saved from Python on a saved input and checks its output against a
// saved expected output, from C++ alone: the proof that a scripted fused_ops model runs without
// Python once the op library is linked.
//
//   run_scripted_model MODEL.pt INPUT.pt EXPECTED.pt [cpu|cuda] [TOLERANCE] [EXPECTED_GRAD.pt]
//
// MODEL.pt comes from torch.jit.save; INPUT.pt and EXPECTED.pt are tensors saved with
// torch.save. Prints the largest absolute difference from the expected output and exits 0 when
// it is at most TOLERANCE (default 1e-5), 1 when it is larger, 2 on bad arguments or any error.
// With EXPECTED_GRAD.pt it trains too: it backpropagates sum(output^2) / 2 (so the output's
// gradient is the output itself) and checks the input's gradient against that file as well.

#include <ATen/Context.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <vector>

namespace {

constexpr double kDefaultTolerance = 1e-5;

at::Tensor load_tensor(const char* path) {
  std::ifstream file(path, std::ios::binary);
  TORCH_CHECK(file, "cannot open ", path);
  const std::vector<char> bytes{std::istreambuf_iterator<char>(file),
                                std::istreambuf_iterator<char>()};
  const c10::IValue value = torch::jit::pickle_load(bytes);
  TORCH_CHECK(value.isTensor(), path, " holds a ", value.tagKind(),
              ", not a tensor saved with torch.save");
  return value.toTensor();
}

double parse_tolerance(const char* text) {
  char* end = nullptr;
  const double tolerance = std::strtod(text, &end);
  TORCH_CHECK(end != text && *end == '\0' && tolerance >= 0,
              "TOLERANCE must be a number >= 0; got '", text, "'");
  return tolerance;
}

// The largest absolute difference of `actual` from `expected`, printed as "WHAT max abs error".
double report_error(const char* what, const at::Tensor& actual, const at::Tensor& expected,
                    double tolerance, const c10::Device& device) {
  const at::Tensor got = actual.detach().to(at::kCPU, at::kDouble);
  TORCH_CHECK(got.sizes() == expected.sizes(), "the ", what, " has shape ", got.sizes(),
              ", the expected one ", expected.sizes());
  const double error = (got - expected).abs().max().item<double>();
  std::cout << what << " max abs error: " << error << " (tolerance " << tolerance << ") on "
            << device << std::endl;
  return error;
}

int run(int argc, char** argv) {
  const c10::Device device(argc > 4 ? argv[4] : "cpu");
  // Checked first: loading onto a missing GPU fails deep in torch with a driver message.
  TORCH_CHECK(!device.is_cuda() || torch::cuda::is_available(), "device ", device,
              " was asked for, but this machine has no usable CUDA GPU (or torch was built "
              "without CUDA); run with cpu instead");
  const double tolerance = argc > 5 ? parse_tolerance(argv[5]) : kDefaultTolerance;
  const bool train = argc > 6;
  // The expected output is a float64 reference: TF32 convolutions would dwarf the op's error.
  at::globalContext().setAllowTF32CuDNN(false);
  std::optional<c10::InferenceMode> inference_mode;
  if (!train) inference_mode.emplace();

  torch::jit::Module module = torch::jit::load(argv[1], device);
  module.eval();
  const at::Tensor input = load_tensor(argv[2]).to(device).requires_grad_(train);
  const at::Tensor output = module.forward({input}).toTensor();
  const double error =
      report_error("output", output, load_tensor(argv[3]).to(at::kDouble), tolerance, device);
  double grad_error = 0;
  if (train) {
    (output * output).sum().div(2).backward();
    grad_error = report_error("input gradient", input.grad(),
                              load_tensor(argv[6]).to(at::kDouble), tolerance, device);
  }
  // Written so that a NaN error fails too.
  return error <= tolerance && grad_error <= tolerance ? EXIT_SUCCESS : EXIT_FAILURE;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || argc > 7) {
    std::cerr << "usage: " << argv[0]
              << " MODEL.pt INPUT.pt EXPECTED.pt [cpu|cuda] [TOLERANCE] [EXPECTED_GRAD.pt]\n";
    return 2;
  }
  try {
    return run(argc, argv);
  } catch (const c10::Error& error) {
    std::cerr << "error: " << error.what_without_backtrace() << std::endl;
  } catch (const std::exception& error) {
    std::cerr << "error: " << error.what() << std::endl;
  }
  return 2;
}
