import TensorCore

/// The basic residual block of He et al. 2016 (the CIFAR ResNet block, torchvision's
/// `BasicBlock`): out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).
///
/// conv1 is 3x3 with `stride` and padding 1, conv2 is 3x3 with stride 1; both have no bias.
/// The shortcut is the identity, or — when `stride != 1` or `inPlanes != planes` — a 1x1
/// convolution with `stride` followed by batch norm (the paper's option B). Children use
/// torchvision's names: `conv1`, `bn1`, `conv2`, `bn2`, `downsample.0`, `downsample.1`.
/// Input [N, inPlanes, H, W]; output [N, planes, ceil(H / stride), ceil(W / stride)].
/// `norm` selects the batch-norm kind of every BN in the block.
public final class BasicBlock: Module {
    public let conv1: Conv2d
    public let bn1: BatchNorm2d
    public let conv2: Conv2d
    public let bn2: BatchNorm2d
    public let downsample: Sequential?
    public let inPlanes: Int, planes: Int, stride: Int

    /// Output channels relative to `planes` (1 for the basic block).
    public static let expansion = 1

    public init(_ inPlanes: Int, _ planes: Int, stride: Int = 1, norm: BatchNormKind = .l2, generator: Generator = .default) {
        precondition(inPlanes > 0 && planes > 0 && stride > 0,
                     "BasicBlock: inPlanes \(inPlanes), planes \(planes) and stride \(stride) must be positive")
        self.inPlanes = inPlanes
        self.planes = planes
        self.stride = stride
        conv1 = Conv2d(inPlanes, planes, kernel: 3, stride: stride, padding: 1, bias: false, generator: generator)
        bn1 = BatchNorm2d(planes, norm: norm)
        conv2 = Conv2d(planes, planes, kernel: 3, stride: 1, padding: 1, bias: false, generator: generator)
        bn2 = BatchNorm2d(planes, norm: norm)
        if stride != 1 || inPlanes != planes {
            downsample = Sequential(Conv2d(inPlanes, planes, kernel: 1, stride: stride, bias: false, generator: generator),
                                    BatchNorm2d(planes, norm: norm))
        } else {
            downsample = nil
        }
    }

    public override func forward(_ x: Tensor) -> Tensor {
        precondition(x.rank == 4 && x.shape[1] == inPlanes,
                     "BasicBlock(\(inPlanes) -> \(planes)): expected input [N, \(inPlanes), H, W], got \(shapeString(x.shape))")
        let out = bn2(conv2(bn1(conv1(x)).relu()))
        let identity = downsample.map { $0(x) } ?? x
        return (out + identity).relu()
    }
}
