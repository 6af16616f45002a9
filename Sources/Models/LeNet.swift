import Layers
import TensorCore

/// LeNet-5 (LeCun et al. 1998) for 28x28 inputs, with ReLU and max pooling as used today:
/// conv5x5(6, pad 2) - pool - conv5x5(16) - pool - FC 120 - FC 84 - FC classes.
/// 61,706 parameters for 1 channel and 10 classes.
public final class LeNet5: Module {
    public let features: Sequential
    public let classifier: Sequential

    public init(inChannels: Int = 1, classes: Int = 10) {
        features = Sequential(
            Conv2d(inChannels, 6, kernel: 5, padding: 2), ReLU(), MaxPool2d(kernel: 2),
            Conv2d(6, 16, kernel: 5), ReLU(), MaxPool2d(kernel: 2))
        classifier = Sequential(
            Flatten(), Linear(16 * 5 * 5, 120), ReLU(), Linear(120, 84), ReLU(), Linear(84, classes))
    }

    public override func forward(_ x: Tensor) -> Tensor { classifier(features(x)) }
}
