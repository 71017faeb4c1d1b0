// An `--online` model in OpenVINO from C++, its shift buffers as OpenVINO states: the request takes
// only the frame, and the buffers never leave the runtime (per ResNet-50 frame in f32 about 0.03-0.05
// cheaper than passing them as tensors; see the README's "What the shift costs" and
// `docs/performance.md`). What `tsm_rewrite.openvino_stateful` does in Python, for deployments
// without Python.
//
//   OV=$(python -c 'import openvino, os; print(os.path.dirname(openvino.__file__))')
//   g++ -std=c++17 -O2 examples/openvino_states.cpp -I "$OV/include" "$OV"/libs/libopenvino.so.* -Wl,-rpath,"$OV/libs" -o openvino_states
//   ./openvino_states online.onnx frames.f32 [2d.onnx]
//
// ($OV: the `openvino` folder of `pip install openvino`, which carries the headers and libraries.)
// frames.f32 holds the frames one after another as raw float32, each of the model's input shape
// with a batch of 1 (numpy: `clip.astype("float32").tofile("frames.f32")` for a clip `[T, 3, H,
// W]`); each frame's first output is printed on a line of its own, and the median time per frame
// on stderr; with the 2D model as a third argument, its time on each frame too, run in turn with
// the online model's (paired), and the ratio of the medians. In a deployment,
// `request.reset_state()` starts a new video. python/tests/test_api.py checks this program
// against the PyTorch streaming reference.
#include <openvino/op/constant.hpp>
#include <openvino/op/maximum.hpp>
#include <openvino/openvino.hpp>
#include <openvino/pass/make_stateful.hpp>
#include <openvino/pass/manager.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

// One JSON string, `s[i]` its opening quote: its value, escapes decoded, and `i` moved past it.
// Tensor names are any UTF-8 text, so a name may hold a quote or a backslash, escaped in JSON.
static std::string json_string(const std::string& s, size_t& i) {
    auto hex4 = [&](size_t at) {
        if (at + 4 > s.size()) throw std::runtime_error("a truncated \\u escape in the buffers' metadata");
        return static_cast<unsigned>(std::stoul(s.substr(at, 4), nullptr, 16));
    };
    std::string out;
    for (++i; i < s.size() && s[i] != '"'; ++i) {
        if (s[i] != '\\') {
            out += s[i];
            continue;
        }
        if (++i == s.size()) break;
        switch (s[i]) {
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'u': {
                unsigned cp = hex4(i + 1);
                i += 4;
                if (cp >= 0xD800 && cp < 0xDC00 && s.compare(i + 1, 2, "\\u") == 0) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4(i + 3) - 0xDC00);
                    i += 6;
                }
                if (cp < 0x80) {
                    out += static_cast<char>(cp);
                } else if (cp < 0x800) {
                    out += static_cast<char>(0xC0 | cp >> 6);
                    out += static_cast<char>(0x80 | (cp & 0x3F));
                } else if (cp < 0x10000) {
                    out += static_cast<char>(0xE0 | cp >> 12);
                    out += static_cast<char>(0x80 | (cp >> 6 & 0x3F));
                    out += static_cast<char>(0x80 | (cp & 0x3F));
                } else {
                    out += static_cast<char>(0xF0 | cp >> 18);
                    out += static_cast<char>(0x80 | (cp >> 12 & 0x3F));
                    out += static_cast<char>(0x80 | (cp >> 6 & 0x3F));
                    out += static_cast<char>(0x80 | (cp & 0x3F));
                }
                break;
            }
            default: out += s[i];  // \" \\ \/
        }
    }
    if (i >= s.size()) throw std::runtime_error("an unterminated string in the buffers' metadata");
    ++i;
    return out;
}

// The buffer pairs from the model's `tsm-rewrite.buffers` metadata (a JSON list of {"input",
// "output", "shape"}), which OpenVINO's ONNX frontend keeps under the model's rt_info "framework".
// The list is flat (objects of strings, and the shape's array), so a scan of its strings suffices:
// a string followed by ':' is a key, and "input" and "output" take the string after them.
static std::map<std::string, std::string> buffer_pairs(const std::shared_ptr<ov::Model>& model) {
    if (!model->has_rt_info("framework", "tsm-rewrite.buffers")) {
        throw std::runtime_error("the model has no 'tsm-rewrite.buffers' metadata: it was not written by "
                                 "tsm-rewrite --online");
    }
    const auto json = model->get_rt_info<std::string>("framework", "tsm-rewrite.buffers");
    std::map<std::string, std::string> pairs;
    std::string key, input, output;
    for (size_t i = 0; i < json.size();) {
        const char c = json[i];
        if (c == '"') {
            auto text = json_string(json, i);
            while (i < json.size() && std::isspace(static_cast<unsigned char>(json[i]))) ++i;
            if (i < json.size() && json[i] == ':') {
                key = std::move(text);
                ++i;
            } else if (key == "input") {
                input = std::move(text);
            } else if (key == "output") {
                output = std::move(text);
            }
            continue;
        }
        if (c == '{') {
            key.clear(), input.clear(), output.clear();
        } else if (c == '}') {
            if (input.empty() || output.empty()) {
                throw std::runtime_error("a buffer without an input or an output in the model's "
                                         "'tsm-rewrite.buffers' metadata: " + json);
            }
            pairs[input] = output;
        }
        ++i;
    }
    if (pairs.empty()) {
        throw std::runtime_error("no buffer pairs in the model's 'tsm-rewrite.buffers' metadata: " + json);
    }
    return pairs;
}

// Where a buffer is a residual sum whose terms nothing else keeps (`Relu(Add(a, b))`, the buffers
// after each stage's first block on ResNet-50), OpenVINO's CPU plugin fuses the Add into the
// convolution before it, which writes into b's memory; the state's Assign then copies it every
// frame with a reorder. An exact copy, `Maximum(x, x)`, before the Assign is cheaper (the Python
// package's `_copy_in_place_sums`, measured in bench/openvino_assign_copies.py).
static int copy_in_place_sums(const std::shared_ptr<ov::Model>& model) {
    static const std::set<std::string> activations = {"Relu",  "Clamp",    "Sigmoid", "Tanh", "Swish",
                                                      "HSwish", "HSigmoid", "Gelu",    "Elu"};
    auto feeds_a_sink = [](const ov::Output<ov::Node>& out) {
        for (const auto& t : out.get_target_inputs()) {
            const std::string type = t.get_node()->get_type_name();
            if (type == "Assign" || type == "Result") return true;
        }
        return false;
    };
    std::vector<std::shared_ptr<ov::Node>> fused;
    for (const auto& op : model->get_ordered_ops()) {
        if (std::string(op->get_type_name()) != "Assign") continue;
        auto node = op->input_value(0).get_node_shared_ptr();
        while (activations.count(node->get_type_name())) node = node->input_value(0).get_node_shared_ptr();
        if (std::string(node->get_type_name()) != "Add") continue;
        bool kept = false;
        for (size_t i = 0; i < 2; ++i) {
            const auto term = node->input_value(i);
            kept = kept || ov::is_type<ov::op::v0::Constant>(term.get_node()) || feeds_a_sink(term);
        }
        if (!kept) fused.push_back(op);
    }
    for (const auto& assign : fused) {
        const auto buffer = assign->input_value(0);
        auto copy = std::make_shared<ov::op::v1::Maximum>(buffer, buffer);
        copy->set_friendly_name(buffer.get_node()->get_friendly_name() + "/copy_for_state");
        assign->input(0).replace_source_output(copy->output(0));
    }
    if (!fused.empty()) model->validate_nodes_and_infer_types();
    return static_cast<int>(fused.size());
}

int main(int argc, char** argv) try {
    if (argc != 3 && argc != 4) {
        std::cerr << "usage: " << argv[0] << " ONLINE_MODEL FRAMES_F32 [MODEL_2D]\n";
        return 2;
    }
    std::ifstream frames(argv[2], std::ios::binary);
    if (!frames) throw std::runtime_error(std::string("cannot read ") + argv[2]);
    ov::Core core;
    auto model = core.read_model(argv[1]);
    const auto pairs = buffer_pairs(model);
    // One stream: a state starts as zeros of its own shape, so the batch is fixed.
    std::map<std::string, ov::PartialShape> shapes;
    for (const auto& input : model->inputs()) {
        auto shape = input.get_partial_shape();
        shape[0] = 1;
        shapes[input.get_any_name()] = shape;
    }
    model->reshape(shapes);
    ov::pass::Manager passes;
    passes.register_pass<ov::pass::MakeStateful>(pairs);
    passes.run_passes(model);
    const int copies = copy_in_place_sums(model);
    std::cerr << pairs.size() << " buffers as states, " << copies << " copied before their Assign\n";

    // f32 for a result equal to the other runtimes'; OpenVINO's default runs bf16 where the CPU has it.
    const auto f32 = ov::hint::inference_precision(ov::element::f32);
    auto compiled = core.compile_model(model, "CPU", f32);
    auto request = compiled.create_infer_request();
    request.reset_state();  // zeros: the frames before the first
    ov::Tensor frame(ov::element::f32, compiled.input().get_shape());
    request.set_input_tensor(frame);
    // The 2D model, if given, on the same frame (its input's batch pinned to 1 as well).
    ov::InferRequest plain;
    if (argc == 4) {
        auto model_2d = core.read_model(argv[3]);
        auto shape = model_2d->input().get_partial_shape();
        shape[0] = 1;
        model_2d->reshape(shape);
        plain = core.compile_model(model_2d, "CPU", f32).create_infer_request();
        plain.set_input_tensor(frame);
    }
    auto timed = [](ov::InferRequest& r) {
        const auto t0 = std::chrono::steady_clock::now();
        r.infer();
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    };
    std::vector<double> ms, ms_2d;
    int k = 0;
    for (; frames.read(static_cast<char*>(frame.data()), frame.get_byte_size()); ++k) {
        // In turn, the 2D model first on even frames, so that neither always runs on a warm cache.
        if (plain && k % 2 == 0) ms_2d.push_back(timed(plain));
        ms.push_back(timed(request));
        if (plain && k % 2 == 1) ms_2d.push_back(timed(plain));
        const auto out = request.get_output_tensor(0);
        const float* y = out.data<const float>();
        std::printf("frame %d:", k);
        for (size_t i = 0; i < out.get_size(); ++i) std::printf(" %.9g", y[i]);
        std::printf("\n");
    }
    if (frames.gcount() != 0 || k == 0) {
        throw std::runtime_error(std::string(argv[2]) + ": not whole frames of " +
                                 std::to_string(frame.get_byte_size()) + " bytes (" +
                                 frame.get_shape().to_string() + " float32)");
    }
    auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
    };
    std::fprintf(stderr, "%d frames, %.2f ms per frame (median)", k, median(ms));
    if (plain) std::fprintf(stderr, ", 2D model %.2f ms: %.3fx", median(ms_2d), median(ms) / median(ms_2d));
    std::fprintf(stderr, "\n");
    return 0;
} catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
}
