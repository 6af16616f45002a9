import Layers
import TensorCore

/// A deep, flat sequential CNN for checkpointing experiments (Chen et al. 2016): a 3x3
/// conv stem to `channels`, then `depth` blocks of conv3x3 (no bias) - BatchNorm2d - ReLU
/// at full resolution, then global average pooling (as a mean over H, W) and FC classes.
///
/// All layers sit in one `Sequential` (3·depth + 5 layers), so a checkpoint plan can cut
/// between any two of them. Activations per sample grow linearly with depth: about
/// 3 · channels · H · W · 4 bytes per block in Float32.
public final class DeepConvNet: Module {
    public let body: Sequential
    public let depth: Int

    public init(depth: Int, channels: Int = 16, inChannels: Int = 1, classes: Int = 10) {
        precondition(depth >= 0 && channels >= 1, "DeepConvNet: depth \(depth) must be >= 0 and channels \(channels) >= 1")
        self.depth = depth
        var layers: [Module] = [Conv2d(inChannels, channels, kernel: 3, padding: 1, bias: false), BatchNorm2d(channels), ReLU()]
        for _ in 0..<depth {
            layers += [Conv2d(channels, channels, kernel: 3, padding: 1, bias: false), BatchNorm2d(channels), ReLU()]
        }
        layers += [GlobalAvgPool(), Linear(channels, classes)]
        body = Sequential(layers)
    }

    public override func forward(_ x: Tensor) -> Tensor { body(x) }
}

/// Mean over the spatial dimensions: [N, C, H, W] -> [N, C].
public final class GlobalAvgPool: Module {
    public override init() {}
    public override func forward(_ x: Tensor) -> Tensor { x.mean(dims: [2, 3]) }
}
