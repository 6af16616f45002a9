import Layers
import TensorCore

/// A small batch-normalised CNN for 28x28 inputs: [conv3x3-BN-ReLU] x2 - pool -
/// [conv3x3-BN-ReLU] x2 - pool - FC 256 - BN - ReLU - dropout - FC classes
/// (32-32-64-64 channels). `norm` picks L2, L1 or L∞ batch norm (Hoffer et al. 2018)
/// for every BN layer.
public final class ConvNetBN: Module {
    public let features: Sequential
    public let classifier: Sequential

    public init(inChannels: Int = 1, classes: Int = 10, norm: BatchNormKind = .l2, dropout: Double = 0.5,
                ghostBatchSize: Int? = nil) {
        func block(_ i: Int, _ o: Int) -> [Module] {
            [Conv2d(i, o, kernel: 3, padding: 1, bias: false), BatchNorm2d(o, norm: norm, ghostBatchSize: ghostBatchSize), ReLU()]
        }
        features = Sequential(block(inChannels, 32) + block(32, 32) + [MaxPool2d(kernel: 2)]
                              + block(32, 64) + block(64, 64) + [MaxPool2d(kernel: 2)])
        classifier = Sequential(
            Flatten(), Linear(64 * 7 * 7, 256, bias: false), BatchNorm1d(256, norm: norm, ghostBatchSize: ghostBatchSize), ReLU(),
            Dropout(dropout), Linear(256, classes))
    }

    public override func forward(_ x: Tensor) -> Tensor { classifier(features(x)) }
}

/// ResNet-20 for small images (He et al. 2016, sec. 4.2): conv3x3(16) then three stages of
/// three basic blocks (16, 32, 64 channels; strides 1, 2, 2), global average pooling and
/// FC classes. Shortcuts that change shape use 1x1 conv + BN (option B).
public final class ResNet20: Module {
    public let conv1: Conv2d
    public let bn1: BatchNorm2d
    public let layer1: Sequential, layer2: Sequential, layer3: Sequential
    public let fc: Linear

    public init(inChannels: Int = 1, classes: Int = 10, norm: BatchNormKind = .l2) {
        conv1 = Conv2d(inChannels, 16, kernel: 3, padding: 1, bias: false)
        bn1 = BatchNorm2d(16, norm: norm)
        func stage(_ i: Int, _ o: Int, _ stride: Int) -> Sequential {
            Sequential(BasicBlock(i, o, stride: stride, norm: norm), BasicBlock(o, o, norm: norm), BasicBlock(o, o, norm: norm))
        }
        layer1 = stage(16, 16, 1)
        layer2 = stage(16, 32, 2)
        layer3 = stage(32, 64, 2)
        fc = Linear(64, classes)
    }

    public override func forward(_ x: Tensor) -> Tensor {
        var h = bn1(conv1(x)).relu()
        h = layer3(layer2(layer1(h)))
        return fc(h.mean(dims: [2, 3]))
    }
}
