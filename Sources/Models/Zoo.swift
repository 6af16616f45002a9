import Layers
import TensorCore

/// The model zoo by name: what `loom train --model NAME`, `loom models` and `loom summary` use.
public enum Zoo {
    public struct Entry: Sendable {
        public let name: String
        public let summary: String
        /// Input shape of one sample [C, H, W].
        public let inputShape: [Int]
        public let classes: Int
    }

    public static let entries: [Entry] = [
        Entry(name: "lenet5", summary: "LeNet-5 with ReLU, 28x28x1", inputShape: [1, 28, 28], classes: 10),
        Entry(name: "alexnet", summary: "AlexNet as in the 2012 paper (LRN, groups, overlapping pools), 224x224x3", inputShape: [3, 224, 224], classes: 1000),
        Entry(name: "alexnet-tv", summary: "torchvision AlexNet layout and keys, 224x224x3", inputShape: [3, 224, 224], classes: 1000),
        Entry(name: "alexnet-small", summary: "AlexNet ingredients at 28x28x1", inputShape: [1, 28, 28], classes: 10),
        Entry(name: "convnet-bn", summary: "4 conv + BN, 2 pools, FC 256 + BN + dropout, 28x28x1", inputShape: [1, 28, 28], classes: 10),
        Entry(name: "resnet20", summary: "ResNet-20 (3x3 basic blocks, 16-32-64), 28x28x1", inputShape: [1, 28, 28], classes: 10),
    ]

    /// Model options shared by the zoo's constructors.
    public struct Options: Sendable {
        public var norm: BatchNormKind = .l2
        public var dropout: Double = 0.5
        public var classes: Int? = nil
        public var ghostBatchSize: Int? = nil
        public init(norm: BatchNormKind = .l2, dropout: Double = 0.5, classes: Int? = nil, ghostBatchSize: Int? = nil) {
            self.norm = norm
            self.dropout = dropout
            self.classes = classes
            self.ghostBatchSize = ghostBatchSize
        }
    }

    /// An unknown model name; the message lists the known ones.
    public struct UnknownModel: Error, CustomStringConvertible {
        public let name: String
        public var description: String { "unknown model '\(name)': expected one of \(Zoo.entries.map(\.name).joined(separator: ", "))" }
    }

    public static func entry(_ name: String) throws(UnknownModel) -> Entry {
        guard let e = entries.first(where: { $0.name == name }) else { throw UnknownModel(name: name) }
        return e
    }

    /// Builds a freshly initialised model (from the default generator; seed it first for reproducibility).
    public static func make(_ name: String, options: Options = Options()) throws(UnknownModel) -> Module {
        let e = try entry(name)
        let classes = options.classes ?? e.classes
        switch name {
        case "lenet5": return LeNet5(inChannels: e.inputShape[0], classes: classes)
        case "alexnet": return AlexNet(inChannels: e.inputShape[0], classes: classes, dropout: options.dropout)
        case "alexnet-tv": return AlexNetTV(classes: classes, dropout: options.dropout)
        case "alexnet-small": return AlexNetSmall(inChannels: e.inputShape[0], classes: classes, dropout: options.dropout)
        case "convnet-bn": return ConvNetBN(inChannels: e.inputShape[0], classes: classes, norm: options.norm, dropout: options.dropout,
                                            ghostBatchSize: options.ghostBatchSize)
        case "resnet20": return ResNet20(inChannels: e.inputShape[0], classes: classes, norm: options.norm)
        default: throw UnknownModel(name: name)
        }
    }
}
