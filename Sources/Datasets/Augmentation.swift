import TensorCore

/// Per-sample transforms applied by the loader, in order, on a [C, H, W] Float32 image.
///
/// Randomness comes from the generator the loader passes in, which is derived from
/// (seed, epoch, batch index): the same seed gives the same augmented batches whether or
/// not prefetching is on.
public enum Augmentation: Sendable, Equatable {
    /// Zero-pads by `padding` on each side, then crops a random HxW window (the CIFAR recipe).
    case randomCrop(padding: Int)
    /// Mirrors left-right with probability `p`.
    case horizontalFlip(p: Double)
    /// Zhong et al. 2017: with probability `p`, sets a random rectangle covering
    /// `scale` of the area with aspect ratio in `ratio` to `value`.
    case randomErasing(p: Double, scale: ClosedRange<Double>, ratio: ClosedRange<Double>, value: Float)
    /// (x - mean[c]) / std[c] per channel.
    case normalize(mean: [Float], std: [Float])

    /// The usual Fashion-MNIST normalization (mean 0.2860, std 0.3530 over the training set).
    public static let fashionMNISTNormalize = Augmentation.normalize(mean: [0.2860], std: [0.3530])

    /// Validates parameters against a sample shape; the message names the bad value.
    public func validate(sampleShape: [Int]) throws(DatasetError) {
        let where_ = "augmentation"
        switch self {
        case .randomCrop(let padding):
            guard padding >= 0 else { throw DatasetError(path: where_, "randomCrop padding \(padding): expected >= 0") }
        case .horizontalFlip(let p), .randomErasing(let p, _, _, _):
            guard (0...1).contains(p) else { throw DatasetError(path: where_, "probability \(p): expected a value in [0, 1]") }
            if case .randomErasing(_, let scale, let ratio, _) = self {
                guard scale.lowerBound > 0, scale.upperBound <= 1 else {
                    throw DatasetError(path: where_, "randomErasing scale \(scale): expected a range inside (0, 1]")
                }
                guard ratio.lowerBound > 0 else { throw DatasetError(path: where_, "randomErasing ratio \(ratio): expected positive aspect ratios") }
            }
        case .normalize(let mean, let std):
            let c = sampleShape.first ?? 1
            guard mean.count == c, std.count == c else {
                throw DatasetError(path: where_, "normalize has \(mean.count) means and \(std.count) stds for \(c) channels")
            }
            guard std.allSatisfy({ $0 > 0 }) else { throw DatasetError(path: where_, "normalize std \(std): expected positive values") }
        }
    }

    /// Applies the transform in place to one [C, H, W] image.
    func apply(_ x: UnsafeMutableBufferPointer<Float>, shape: [Int], scratch: UnsafeMutableBufferPointer<Float>, generator: Generator) {
        let c = shape[0], h = shape[1], w = shape[2]
        switch self {
        case .randomCrop(let pad):
            if pad == 0 { return }
            let dy = generator.nextInt(below: 2 * pad + 1) - pad
            let dx = generator.nextInt(below: 2 * pad + 1) - pad
            for i in 0..<x.count { scratch[i] = x[i] }
            for ch in 0..<c {
                for y in 0..<h {
                    let sy = y + dy
                    for xx in 0..<w {
                        let sx = xx + dx
                        x[(ch * h + y) * w + xx] = (sy >= 0 && sy < h && sx >= 0 && sx < w) ? scratch[(ch * h + sy) * w + sx] : 0
                    }
                }
            }
        case .horizontalFlip(let p):
            if uniform(generator) >= p { return }
            for ch in 0..<c {
                for y in 0..<h {
                    let row = (ch * h + y) * w
                    for xx in 0..<(w / 2) { x.swapAt(row + xx, row + w - 1 - xx) }
                }
            }
        case .randomErasing(let p, let scale, let ratio, let value):
            if uniform(generator) >= p { return }
            let area = Double(h * w)
            for _ in 0..<10 {
                let target = area * (scale.lowerBound + (scale.upperBound - scale.lowerBound) * uniform(generator))
                let logR = (ratio.lowerBound.logValue, ratio.upperBound.logValue)
                let aspect = (logR.0 + (logR.1 - logR.0) * uniform(generator)).expValue
                let eh = Int((target * aspect).squareRoot().rounded())
                let ew = Int((target / aspect).squareRoot().rounded())
                if eh < 1 || ew < 1 || eh > h || ew > w { continue }
                let y0 = generator.nextInt(below: h - eh + 1), x0 = generator.nextInt(below: w - ew + 1)
                for ch in 0..<c { for y in y0..<(y0 + eh) { for xx in x0..<(x0 + ew) { x[(ch * h + y) * w + xx] = value } } }
                return
            }
        case .normalize(let mean, let std):
            let plane = h * w
            for ch in 0..<c {
                let m = mean[ch], inv = 1 / std[ch]
                for i in (ch * plane)..<((ch + 1) * plane) { x[i] = (x[i] - m) * inv }
            }
        }
    }
}

func uniform(_ g: Generator) -> Double { Double(g.nextUInt64() >> 11) * 0x1.0p-53 }

#if canImport(Glibc)
import Glibc
extension Double {
    var logValue: Double { Glibc.log(self) }
    var expValue: Double { Glibc.exp(self) }
}
#endif
