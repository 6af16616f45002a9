import TensorCore

/// y = x Wᵀ + b. Input [..., inFeatures], output [..., outFeatures].
/// Weight [out, in] and bias [out] initialised as PyTorch's `nn.Linear`.
/// Under `withAutocast` the product runs on half copies of x, W and b (see `AutocastPolicy`).
public final class Linear: Module {
    public let weight: Parameter
    public let bias: Parameter?
    public let inFeatures: Int, outFeatures: Int

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, generator: Generator = .default) {
        precondition(inFeatures > 0 && outFeatures > 0, "Linear: features must be positive, got \(inFeatures) -> \(outFeatures)")
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        weight = Parameter(Init.torchDefaultWeight([outFeatures, inFeatures], generator: generator))
        self.bias = bias ? Parameter(Init.torchDefaultBias(outFeatures, fanIn: inFeatures, generator: generator)) : nil
    }

    public override func forward(_ x: Tensor) -> Tensor {
        precondition(x.shape.last == inFeatures, "Linear(\(inFeatures) -> \(outFeatures)): input \(shapeString(x.shape)) has last dimension \(x.shape.last ?? 0), expected \(inFeatures)")
        if Autocast.isEnabled {
            let xh = Autocast.narrow(x)
            if xh.dtype.isReducedPrecision && weight.value.dtype == .float32 {
                // Autocast: half input, one mixed node that multiplies by a half copy of the
                // Float32 master weight (output and saved tensors half) and accumulates the
                // weight gradient into the master's `.grad` in Float32, fused.
                return xh.linear(weight.value, bias: bias?.value)
            }
            // Other weight types: recorded casts (the gradient returns in the weight's type).
            let y = xh.matmul(Autocast.narrow(weight.value).transposed(0, 1))
            return bias.map { y + Autocast.narrow($0.value) } ?? y
        }
        // One node; its backward accumulates the weight gradient in place (`Tensor.linear`).
        return x.linear(weight.value, bias: bias?.value)
    }
}

/// 2-D convolution over [N, C, H, W] (cross-correlation, as PyTorch's `nn.Conv2d`):
/// weight [out, in/groups, kh, kw], bias [out], PyTorch's default initialisation.
/// Under `withAutocast` the convolution runs on half copies of x, weight and bias (see `AutocastPolicy`).
public final class Conv2d: Module {
    public let weight: Parameter
    public let bias: Parameter?
    public let inChannels: Int, outChannels: Int
    public let kernelSize: (Int, Int), stride: (Int, Int), padding: (Int, Int), dilation: (Int, Int)
    public let groups: Int

    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: (Int, Int), stride: (Int, Int) = (1, 1),
                padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1), groups: Int = 1, bias: Bool = true,
                generator: Generator = .default) {
        precondition(inChannels > 0 && outChannels > 0 && groups > 0 && inChannels % groups == 0 && outChannels % groups == 0,
                     "Conv2d: channels \(inChannels) -> \(outChannels) must be positive and divisible by groups \(groups)")
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.kernelSize = kernelSize
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        let shape = [outChannels, inChannels / groups, kernelSize.0, kernelSize.1]
        weight = Parameter(Init.torchDefaultWeight(shape, generator: generator))
        self.bias = bias ? Parameter(Init.torchDefaultBias(outChannels, fanIn: Init.fans(shape).fanIn, generator: generator)) : nil
    }

    /// Square-kernel convenience: `Conv2d(3, 64, kernel: 3, padding: 1)`.
    public convenience init(_ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                            dilation: Int = 1, groups: Int = 1, bias: Bool = true, generator: Generator = .default) {
        self.init(inChannels, outChannels, kernelSize: (kernel, kernel), stride: (stride, stride), padding: (padding, padding),
                  dilation: (dilation, dilation), groups: groups, bias: bias, generator: generator)
    }

    public override func forward(_ x: Tensor) -> Tensor {
        if Autocast.isEnabled {
            // Autocast: as in Linear, half input and half copies of the Float32 master weight/bias.
            return Autocast.narrow(x).conv2d(Autocast.narrow(weight.value), bias: bias.map { Autocast.narrow($0.value) },
                                             stride: stride, padding: padding, dilation: dilation, groups: groups)
        }
        return x.conv2d(weight.value, bias: bias?.value, stride: stride, padding: padding, dilation: dilation, groups: groups)
    }
}
