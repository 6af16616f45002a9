import TensorCore

/// Applies layers in order; children are named "0", "1", ... like `nn.Sequential`.
public final class Sequential: Module {
    public let layers: [Module]
    public init(_ layers: [Module]) { self.layers = layers }
    public convenience init(_ layers: Module...) { self.init(layers) }
    public override func namedChildren() -> [(String, Module)] { layers.enumerated().map { ("\($0.offset)", $0.element) } }
    /// Gradient checkpointing over the layers (nil: none); see `CheckpointPlanner`.
    public var checkpointPlan: CheckpointPlan?
    public override func forward(_ x: Tensor) -> Tensor {
        if let profiler = LayerProfiler.current, GradMode.isEnabled { return profiler.run(self, x) }
        if let plan = checkpointPlan { return forwardSegments(x, plan: plan) }
        return layers.reduce(x) { $1($0) }
    }
}

/// Max pooling over [N, C, H, W]; `MaxPool2d(kernel: 3, stride: 2)` is AlexNet's overlapping pool.
public final class MaxPool2d: Module {
    public let kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int)
    public init(kernel: Int, stride: Int? = nil, padding: Int = 0) {
        self.kernel = (kernel, kernel)
        self.stride = (stride ?? kernel, stride ?? kernel)
        self.padding = (padding, padding)
    }
    public override func forward(_ x: Tensor) -> Tensor { x.maxPool2d(kernel: kernel, stride: stride, padding: padding) }
}

/// Average pooling over [N, C, H, W] (padding counted, as PyTorch's default).
public final class AvgPool2d: Module {
    public let kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int)
    public init(kernel: Int, stride: Int? = nil, padding: Int = 0) {
        self.kernel = (kernel, kernel)
        self.stride = (stride ?? kernel, stride ?? kernel)
        self.padding = (padding, padding)
    }
    public override func forward(_ x: Tensor) -> Tensor { x.avgPool2d(kernel: kernel, stride: stride, padding: padding) }
}

/// Adaptive average pooling to a fixed output size; bins follow PyTorch:
/// bin i covers [floor(i·H/out), ceil((i+1)·H/out)).
public final class AdaptiveAvgPool2d: Module {
    public let outputSize: (Int, Int)
    public init(_ outputSize: (Int, Int)) { self.outputSize = outputSize }
    public convenience init(_ size: Int) { self.init((size, size)) }

    public override func forward(_ x: Tensor) -> Tensor {
        precondition(x.rank == 4, "AdaptiveAvgPool2d: expected [N, C, H, W], got \(shapeString(x.shape))")
        let h = x.shape[2], w = x.shape[3], (oh, ow) = outputSize
        if h % oh == 0 && w % ow == 0 {
            return x.avgPool2d(kernel: (h / oh, w / ow), stride: (h / oh, w / ow))
        }
        var rows: [Tensor] = []
        for i in 0..<oh {
            let h0 = (i * h) / oh, h1 = ((i + 1) * h + oh - 1) / oh
            var cols: [Tensor] = []
            for j in 0..<ow {
                let w0 = (j * w) / ow, w1 = ((j + 1) * w + ow - 1) / ow
                cols.append(x.narrowed(dim: 2, start: h0, length: h1 - h0).narrowed(dim: 3, start: w0, length: w1 - w0)
                    .mean(dims: [2, 3], keepDim: true))
            }
            rows.append(Tensor.cat(cols, dim: 3))
        }
        return Tensor.cat(rows, dim: 2)
    }
}

/// Flattens dims `startDim...endDim` (default: all but the batch dim).
public final class Flatten: Module {
    public let startDim: Int, endDim: Int
    public init(startDim: Int = 1, endDim: Int = -1) {
        self.startDim = startDim
        self.endDim = endDim
    }
    public override func forward(_ x: Tensor) -> Tensor { x.flattened(startDim: startDim, endDim: endDim) }
}

/// max(0, x).
public final class ReLU: Module { public override func forward(_ x: Tensor) -> Tensor { x.relu() } }
/// x for x > 0, slope·x otherwise.
public final class LeakyReLU: Module {
    public let slope: Double
    public init(_ slope: Double = 0.01) { self.slope = slope }
    public override func forward(_ x: Tensor) -> Tensor { x.leakyRelu(slope) }
}
/// x for x > 0, alpha(exp(x) − 1) otherwise.
public final class ELU: Module {
    public let alpha: Double
    public init(_ alpha: Double = 1) { self.alpha = alpha }
    public override func forward(_ x: Tensor) -> Tensor { x.elu(alpha) }
}
/// x·Φ(x).
public final class GELU: Module { public override func forward(_ x: Tensor) -> Tensor { x.gelu() } }
/// tanh(x).
public final class Tanh: Module { public override func forward(_ x: Tensor) -> Tensor { x.tanh() } }
/// 1 / (1 + exp(−x)).
public final class Sigmoid: Module { public override func forward(_ x: Tensor) -> Tensor { x.sigmoid() } }
/// Passes its input through.
public final class Identity: Module { public override func forward(_ x: Tensor) -> Tensor { x } }

/// Inverted dropout (Srivastava et al. 2014; AlexNet uses p = 0.5): in training, zeroes each
/// element with probability p and scales survivors by 1/(1−p); identity in eval mode.
public final class Dropout: Module {
    public let p: Double
    public let generator: Generator
    public init(_ p: Double = 0.5, generator: Generator = .default) {
        precondition(p >= 0 && p < 1, "Dropout: p \(p) must be in [0, 1)")
        self.p = p
        self.generator = generator
    }
    public override func forward(_ x: Tensor) -> Tensor {
        guard isTraining && p > 0 else { return x }
        return x * Tensor.dropoutMask(x.shape, p: p, dtype: x.dtype, generator: generator)
    }
}
