import Layers
import TensorCore

/// AlexNet as in Krizhevsky, Sutskever & Hinton (2012) for 224x224x3 inputs: five conv
/// layers (96-256-384-384-256 kernels) with ReLU, local response normalisation after
/// conv1 and conv2 (k = 2, n = 5, alpha = 1e-4, beta = 0.75), overlapping 3x3 stride-2
/// max pooling, and conv2/4/5 as grouped convolutions (groups = 2: the paper's split of
/// kernels across two GPUs, each half seeing only its own half of the previous layer).
/// Then FC 4096 - FC 4096 - FC classes with dropout 0.5. 60,965,224 parameters at 1000
/// classes. Padding 2 on conv1 maps 224 to 55, as the paper's figure shows.
public final class AlexNet: Module {
    public let features: Sequential
    public let classifier: Sequential

    public init(inChannels: Int = 3, classes: Int = 1000, dropout: Double = 0.5) {
        features = Sequential(
            Conv2d(inChannels, 96, kernel: 11, stride: 4, padding: 2), ReLU(),
            LocalResponseNorm(size: 5, alpha: 1e-4, beta: 0.75, k: 2), MaxPool2d(kernel: 3, stride: 2),
            Conv2d(96, 256, kernel: 5, padding: 2, groups: 2), ReLU(),
            LocalResponseNorm(size: 5, alpha: 1e-4, beta: 0.75, k: 2), MaxPool2d(kernel: 3, stride: 2),
            Conv2d(256, 384, kernel: 3, padding: 1), ReLU(),
            Conv2d(384, 384, kernel: 3, padding: 1, groups: 2), ReLU(),
            Conv2d(384, 256, kernel: 3, padding: 1, groups: 2), ReLU(),
            MaxPool2d(kernel: 3, stride: 2))
        classifier = Sequential(
            Flatten(), Dropout(dropout), Linear(256 * 6 * 6, 4096), ReLU(),
            Dropout(dropout), Linear(4096, 4096), ReLU(), Linear(4096, classes))
    }

    public override func forward(_ x: Tensor) -> Tensor { classifier(features(x)) }
}

/// torchvision's AlexNet (the "one weird trick" variant: 64-192-384-256-256 kernels, no
/// LRN, no groups, adaptive 6x6 average pool) with its exact state-dict keys
/// (`features.0.weight`, ..., `classifier.6.bias`): 61,100,840 parameters at 1000 classes.
public final class AlexNetTV: Module {
    public let features: Sequential
    public let avgpool: AdaptiveAvgPool2d
    public let classifier: Sequential

    public init(classes: Int = 1000, dropout: Double = 0.5) {
        features = Sequential(
            Conv2d(3, 64, kernel: 11, stride: 4, padding: 2), ReLU(), MaxPool2d(kernel: 3, stride: 2),
            Conv2d(64, 192, kernel: 5, padding: 2), ReLU(), MaxPool2d(kernel: 3, stride: 2),
            Conv2d(192, 384, kernel: 3, padding: 1), ReLU(),
            Conv2d(384, 256, kernel: 3, padding: 1), ReLU(),
            Conv2d(256, 256, kernel: 3, padding: 1), ReLU(), MaxPool2d(kernel: 3, stride: 2))
        avgpool = AdaptiveAvgPool2d(6)
        classifier = Sequential(
            Dropout(dropout), Linear(256 * 6 * 6, 4096), ReLU(),
            Dropout(dropout), Linear(4096, 4096), ReLU(), Linear(4096, classes))
    }

    public override func forward(_ x: Tensor) -> Tensor {
        classifier(avgpool(features(x)).flattened(startDim: 1))
    }
}

/// AlexNet's ingredients at Fashion-MNIST scale (28x28x1): ReLU, LRN, overlapping 3x3/2
/// pooling, grouped conv2/4/5, dropout 0.5; 64-128-192-192-128 kernels, FC 512 - 256.
public final class AlexNetSmall: Module {
    public let features: Sequential
    public let classifier: Sequential

    public init(inChannels: Int = 1, classes: Int = 10, dropout: Double = 0.5) {
        features = Sequential(
            Conv2d(inChannels, 64, kernel: 5, padding: 2), ReLU(),
            LocalResponseNorm(size: 5, alpha: 1e-4, beta: 0.75, k: 2), MaxPool2d(kernel: 3, stride: 2),  // 28 -> 13
            Conv2d(64, 128, kernel: 5, padding: 2, groups: 2), ReLU(),
            LocalResponseNorm(size: 5, alpha: 1e-4, beta: 0.75, k: 2), MaxPool2d(kernel: 3, stride: 2),  // 13 -> 6
            Conv2d(128, 192, kernel: 3, padding: 1), ReLU(),
            Conv2d(192, 192, kernel: 3, padding: 1, groups: 2), ReLU(),
            Conv2d(192, 128, kernel: 3, padding: 1, groups: 2), ReLU(),
            MaxPool2d(kernel: 3, stride: 2))  // 6 -> 2
        classifier = Sequential(
            Flatten(), Dropout(dropout), Linear(128 * 2 * 2, 512), ReLU(),
            Dropout(dropout), Linear(512, 256), ReLU(), Linear(256, classes))
    }

    public override func forward(_ x: Tensor) -> Tensor { classifier(features(x)) }
}
