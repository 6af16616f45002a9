#if canImport(Foundation)
import Foundation
#endif
import TensorCore

/// How a batch-norm layer measures the spread of each channel (Hoffer et al. 2018,
/// "Norm matters: efficient and accurate normalization schemes in deep networks").
///
/// With d = x − μ over the n elements of a channel in the (ghost) batch:
/// - `.l2`: the standard scale sqrt(mean(d²) + eps) (Ioffe & Szegedy 2015).
/// - `.l1`: s = sqrt(π/2) · mean(|d|) (sec. 4); for Gaussian data E[s] ≈ σ. Normalises by (s + eps).
/// - `.linf(topK:)`: s = C(n) · mean of the k largest |d| (sec. 5, the L∞ norm and its robust
///   "top-k" variant), C(n) = 0.5 (1 + sqrt(π ln 4)) / sqrt(2 ln n). `topK: 1` is the plain
///   maximum; `nil` uses `BatchNorm.defaultTopK` (10, the paper's released "Top10" setting),
///   clamped to n. Normalises by (s + eps).
public enum BatchNormKind: Sendable, Equatable, CustomStringConvertible {
    case l2
    case l1
    case linf(topK: Int?)

    public var description: String {
        switch self {
        case .l2: return "l2"
        case .l1: return "l1"
        case .linf(let k): return k.map { "linf(top\($0))" } ?? "linf"
        }
    }
}

/// Batch-norm helpers: the L∞ constant C(n), the top-k default, and per-channel statistics
/// computed in a chosen precision (the paper's low-precision argument).
public enum BatchNorm {
    /// The default k of `.linf(topK: nil)`: 10, as in the authors' released code
    /// (`GhostTopkBatchNorm2d(k=10)`, "normalized Top10 batch norm").
    ///
    /// Why not k proportional to n: with a fixed small k the estimate stays a tail statistic
    /// (close to the maximum the constant C(n) was derived for) and costs O(n log k); a
    /// k = n/10 estimate is a different statistic whose ratio to σ falls with n (measured on
    /// Gaussian data: C(n)·mean(top n/10) ≈ 1.10σ at n = 32 and 0.68σ at n = 65536, against
    /// 0.87σ–1.32σ for k = 10 and 1.33σ–1.46σ for the maximum). The affine weight absorbs
    /// the constant factor either way.
    public static let defaultTopK = 10

    /// The paper's L∞ constant C(n) = 0.5 (1 + sqrt(π ln 4)) / sqrt(2 ln n) for n ≥ 2
    /// elements per channel.
    ///
    /// It comes from bounds on the expected maximum of n Gaussians; note that
    /// C(n) · E[max |x − μ|] is about 1.3σ–1.5σ for n between 32 and 65536, not σ (the
    /// constant makes the scale comparable across n, the affine weight absorbs the rest).
    public static func linfConstant(_ n: Int) -> Double {
        precondition(n >= 2, "BatchNorm.linfConstant: need at least 2 elements per channel, got \(n)")
        return 0.5 * (1 + (Double.pi * log(4.0)).squareRoot()) / (2 * log(Double(n))).squareRoot()
    }

    /// The k used by `kind` for n elements per channel (1 for other kinds).
    public static func topK(_ kind: BatchNormKind, count n: Int) -> Int {
        guard case .linf(let k) = kind else { return 1 }
        let kk = k ?? defaultTopK
        precondition(kk >= 1, "BatchNorm: topK \(kk) must be at least 1")
        return Swift.min(kk, Swift.max(n, 1))
    }

    /// Per-channel (mean, scale) of `x` ([N, C, *], channel dim 1), computed with an explicit
    /// loop whose every operation rounds to `dtype` (Float16, Float32 or Float64).
    ///
    /// The input is first converted to `dtype`. Then, for each channel with n elements:
    /// μ = Σ (xᵢ / n); dᵢ = xᵢ − μ; and the scale without eps:
    /// - `.l2`: sqrt(Σ (dᵢ² / n)) (the biased standard deviation),
    /// - `.l1`: sqrt(π/2) · Σ (|dᵢ| / n),
    /// - `.linf`: C(n) · Σ (vⱼ / k) over the k largest |dᵢ|.
    ///
    /// Every sum is pairwise (tree) summation of terms already divided by n (or k), so no
    /// partial sum exceeds the largest term: a sum of n terms cannot overflow on its own.
    /// What remains is the per-element term, which is the paper's point: the L2 term dᵢ²
    /// exceeds Float16's largest finite value (65504) once |dᵢ| > 255.9, while |dᵢ| stays
    /// representable up to 65504. So for deviations of a few hundred, Float16 L2 gives an
    /// infinite scale while L1 and L∞ stay finite and close to the Float32 result. (A
    /// careful L2 implementation could pre-scale dᵢ before squaring; this function shows the
    /// straightforward sum of squares the paper analyses, in the same loop for every kind.)
    ///
    /// Results have shape [C] and dtype `dtype` (infinities preserved). Not differentiable.
    public static func statistics(_ x: Tensor, kind: BatchNormKind, computeIn dtype: DType) -> (mean: Tensor, scale: Tensor) {
        precondition(x.rank >= 2, "BatchNorm.statistics: expected [N, C, *], got \(shapeString(x.shape))")
        precondition(x.dtype.isFloatingPoint, "BatchNorm.statistics: expected a floating-point input, got \(x.dtype)")
        let c = x.shape[1]
        let n = c == 0 ? 0 : x.count / c
        precondition(n >= 1, "BatchNorm.statistics: no elements per channel in \(shapeString(x.shape))")
        if case .linf = kind {
            precondition(n >= 2, "BatchNorm.statistics: L∞ needs at least 2 elements per channel, got \(n) in \(shapeString(x.shape))")
        }
        // [C, n] rows in the compute dtype.
        let rows = noGrad { x.detached().to(dtype).transposed(0, 1).contiguous().reshaped([c, n]) }
        switch dtype {
        case .float16: return channelStatistics(rows, Float16.self, kind: kind)
        case .float32: return channelStatistics(rows, Float.self, kind: kind)
        case .float64: return channelStatistics(rows, Double.self, kind: kind)
        default: preconditionFailure("BatchNorm.statistics: computeIn must be float16, float32 or float64, got \(dtype)")
        }
    }

    static func channelStatistics<T: BinaryFloatingPoint & TensorElement>(_ rows: Tensor, _: T.Type, kind: BatchNormKind) -> (mean: Tensor, scale: Tensor) {
        let c = rows.shape[0], n = rows.shape[1]
        let values: [T] = rows.scalars(as: T.self)
        let invN = 1 / T(n)
        var means = [T](repeating: 0, count: c), scales = [T](repeating: 0, count: c)
        var terms = [T](repeating: 0, count: n)
        for ch in 0..<c {
            let base = ch * n
            for i in 0..<n { terms[i] = values[base + i] * invN }
            let mu = pairwiseSum(&terms)
            means[ch] = mu
            switch kind {
            case .l2:
                for i in 0..<n {
                    let d = values[base + i] - mu
                    terms[i] = (d * d) * invN
                }
                scales[ch] = pairwiseSum(&terms).squareRoot()
            case .l1:
                for i in 0..<n { terms[i] = Swift.abs(values[base + i] - mu) * invN }
                scales[ch] = T(Double.pi / 2).squareRoot() * pairwiseSum(&terms)
            case .linf:
                let k = topK(kind, count: n)
                var dev = (0..<n).map { Swift.abs(values[base + $0] - mu) }
                dev.sort(by: >)
                let invK = 1 / T(k)
                var top = dev.prefix(k).map { $0 * invK }
                scales[ch] = T(linfConstant(n)) * pairwiseSum(&top)
            }
        }
        return (Tensor(means), Tensor(scales))
    }

    /// Pairwise (tree) sum in T; destroys `terms`.
    static func pairwiseSum<T: BinaryFloatingPoint>(_ terms: inout [T]) -> T {
        var count = terms.count
        if count == 0 { return 0 }
        while count > 1 {
            let half = count / 2
            for i in 0..<half { terms[i] = terms[2 * i] + terms[2 * i + 1] }
            if count % 2 == 1 {
                terms[half] = terms[count - 1]
                count = half + 1
            } else {
                count = half
            }
        }
        return terms[0]
    }
}

/// Shared implementation of `BatchNorm1d` and `BatchNorm2d` (PyTorch's `_BatchNorm`).
///
/// Parameters and buffers carry PyTorch's names: `weight` (γ, init 1) and `bias` (β, init 0)
/// when `affine`; buffers `running_mean` (init 0), `running_var` (init 1) and
/// `num_batches_tracked` (Int64, shape []) when `trackRunningStats`.
///
/// Training (or `trackRunningStats == false`) normalises with statistics of the batch, per
/// channel over every dim except 1: y = (x − μ) / scale · γ + β, the scale given by `norm`
/// (see `BatchNormKind`). With `ghostBatchSize` the batch is split along dim 0 into ghost
/// batches of that many samples (the last may be smaller), each normalised with its own
/// statistics. In training with running statistics, each step updates
/// running = (1 − m) · running + m · batch with m = `momentum` (nil: the cumulative average
/// m = 1 / num_batches_tracked, as PyTorch), using the mean over ghost batches of:
/// μ, and for `.l2` the unbiased variance (n / (n − 1) times the biased one, as PyTorch).
/// For `.l1` and `.linf` `running_var` stores s² (the squared scale, no Bessel correction), so
/// evaluation divides by sqrt(running_var) + eps — the same scale as training.
/// Evaluation with running statistics: `.l2` uses (x − running_mean) / sqrt(running_var + eps).
public class BatchNormBase: Module {
    public let weight: Parameter?
    public let bias: Parameter?
    public let runningMean: Buffer?
    public let runningVar: Buffer?
    public let numBatchesTracked: Buffer?
    public let numFeatures: Int
    public let eps: Double
    public let momentum: Double?
    public let norm: BatchNormKind
    public let ghostBatchSize: Int?

    init(_ features: Int, eps: Double, momentum: Double?, affine: Bool, trackRunningStats: Bool,
         norm: BatchNormKind, ghostBatchSize: Int?, layer: String) {
        precondition(features > 0, "\(layer): features must be positive, got \(features)")
        precondition(eps >= 0, "\(layer): eps \(eps) must be non-negative")
        if let momentum { precondition(momentum >= 0 && momentum <= 1, "\(layer): momentum \(momentum) must be in [0, 1]") }
        if let g = ghostBatchSize { precondition(g >= 1, "\(layer): ghostBatchSize \(g) must be positive") }
        if case .linf(let k?) = norm { precondition(k >= 1, "\(layer): topK \(k) must be at least 1") }
        numFeatures = features
        self.eps = eps
        self.momentum = momentum
        self.norm = norm
        self.ghostBatchSize = ghostBatchSize
        weight = affine ? Parameter(Tensor.ones([features])) : nil
        bias = affine ? Parameter(Tensor.zeros([features])) : nil
        runningMean = trackRunningStats ? Buffer(Tensor.zeros([features])) : nil
        runningVar = trackRunningStats ? Buffer(Tensor.ones([features])) : nil
        numBatchesTracked = trackRunningStats ? Buffer(Tensor(scalar: Int64(0))) : nil
    }

    /// Whether γ and β are learned.
    public var affine: Bool { weight != nil }
    /// Whether running statistics are kept (and used in evaluation).
    public var trackRunningStats: Bool { runningMean != nil }

    /// The layer name used in messages.
    var layerName: String { "\(type(of: self))(\(numFeatures))" }

    /// Validates the input shape (subclasses).
    func checkInput(_ x: Tensor) {}

    public override func forward(_ x: Tensor) -> Tensor {
        checkInput(x)
        if x.dtype.isReducedPrecision, let policy = Autocast.policy {
            if case .l2 = norm, affine, isTraining || !trackRunningStats, weight!.value.dtype == .float32 {
                // The fused kernel reads the half input with Float32 statistics and master
                // γ/β directly: no Float32 copy, no recomputation in backward.
                return forward(x, weight: weight?.value, bias: bias?.value)
            }
            return forwardSavingInput(x, computeIn: usesFloat32Statistics(policy) ? .float32 : x.dtype)
        }
        return forward(x, weight: weight?.value, bias: bias?.value)
    }

    /// Whether this layer widens a half input to Float32 under `policy`: always for L2, whose
    /// sum of squares overflows Float16 once a deviation exceeds 255.9 (and whose small
    /// variances underflow); for L1 / L∞ unless `policy.halfBatchNorm` (Hoffer et al. 2018,
    /// "Norm matters", sec. 4–5: L1 and L∞ batch norm are numerically stable in half precision).
    func usesFloat32Statistics(_ policy: AutocastPolicy) -> Bool {
        if case .l2 = norm { return true }
        return !policy.halfBatchNorm
    }

    /// The autocast path for a half input `x`: the layer computed on `x` converted to `compute`
    /// (Float32, or the half type itself for L1 / L∞ with `halfBatchNorm`), with the Float32
    /// master γ and β, and the output rounded to the input's type.
    ///
    /// Only the half input is kept for backward (not a Float32 copy, nor the intermediate
    /// tensors of the composed L1 / L∞ ops); the backward pass converts it again, recomputes the
    /// layer with `GradMode.isRecomputing` set (so running statistics are updated once, by the
    /// forward pass) and returns the VJP: Float32 gradients for γ and β, the input's gradient
    /// rounded to its type. One extra batch-norm forward per step buys half-sized saved activations.
    func forwardSavingInput(_ x: Tensor, computeIn compute: DType) -> Tensor {
        let half = x.dtype
        let xd = x.detached()
        let params = [weight?.value, bias?.value].compactMap { $0 }
        let hasWeight = weight != nil, hasBias = bias != nil
        let y = noGrad { withoutAutocast { forward(xd.to(compute), weight: weight?.value.detached(), bias: bias?.value.detached()) } }
        let out = y.detached().to(half)
        let saved = params.map { $0.detached() }
        return out.recording("batchNorm", inputs: [x] + params) { [self] g in
            GradMode.$isRecomputing.withValue(true) {
                withoutAutocast {
                    let leaves = ([xd.to(compute)] + saved).map { $0.requiringGrad() }
                    let standIn: Tensor = enableGrad {
                        let y = self.forward(leaves[0], weight: hasWeight ? leaves[1] : nil,
                                             bias: hasBias ? leaves[hasWeight ? 2 : 1] : nil)
                        // A stand-in carrying y's graph over 4 bytes of storage: the recomputed
                        // output is freed before backward runs (no batch-norm VJP needs it).
                        return Tensor.zeros([], dtype: y.dtype).expand(y.shape).recording("batchNorm", inputs: [y]) { [$0] }
                    }
                    standIn.backward(g.to(compute))
                    let gx = leaves[0].grad ?? Tensor.zeros(leaves[0].shape, dtype: compute)
                    return [gx.to(half)] + leaves.dropFirst().map { $0.grad ?? $0.zerosLike() }
                }
            }
        }
    }

    /// The layer on input `x` with affine parameters `w` and `b` (nil when not affine).
    func forward(_ x: Tensor, weight w: Tensor?, bias b: Tensor?) -> Tensor {
        let c = numFeatures
        var bshape = [Int](repeating: 1, count: x.rank)
        bshape[1] = c
        var y: Tensor
        if isTraining || !trackRunningStats {
            let chunks = ghostBatchSize.map { x.split(size: $0, dim: 0) } ?? [x]
            var outs: [Tensor] = [], means: [Tensor] = [], spreads: [Tensor] = []
            for (i, chunk) in chunks.enumerated() {
                let r = normalizeWithBatchStatistics(chunk, weight: w, bias: b, bshape: bshape, ghost: chunks.count > 1 ? i : nil)
                outs.append(r.y)
                means.append(r.mean)
                spreads.append(r.runningSpread)
            }
            y = outs.count == 1 ? outs[0] : Tensor.cat(outs, dim: 0)
            if isTraining, !GradMode.isRecomputing, let rm = runningMean, let rv = runningVar, let nbt = numBatchesTracked {
                noGrad {
                    let count = Double(means.count)
                    let meanAvg = means.dropFirst().reduce(means[0], +) / count
                    let spreadAvg = spreads.dropFirst().reduce(spreads[0], +) / count
                    let tracked = Int64(nbt.value.item()) + 1
                    nbt.value = Tensor(scalar: tracked)
                    let m = momentum ?? 1 / Double(tracked)
                    rm.value = (rm.value * (1 - m) + meanAvg.to(rm.value.dtype) * m).detached()
                    rv.value = (rv.value * (1 - m) + spreadAvg.to(rv.value.dtype) * m).detached()
                }
            }
        } else {
            let rm = runningMean!.value.to(x.dtype).reshaped(bshape)
            let rv = runningVar!.value.to(x.dtype).reshaped(bshape)
            switch norm {
            case .l2: y = (x - rm) * (rv + eps).rsqrt()
            case .l1, .linf: y = (x - rm) / (rv.sqrt() + eps)
            }
        }
        let affineDone: Bool
        if case .l2 = norm, isTraining || !trackRunningStats { affineDone = true } else { affineDone = false }
        if !affineDone, let w, let b {
            let wv = w.dtype == x.dtype ? w : w.to(x.dtype)
            let bv = b.dtype == x.dtype ? b : b.to(x.dtype)
            y = y * wv.reshaped(bshape) + bv.reshaped(bshape)
        }
        return y
    }

    /// Normalises one (ghost) batch; returns the output and the detached per-channel [C]
    /// mean and running-"var" statistic (unbiased variance for L2, s² otherwise).
    func normalizeWithBatchStatistics(_ x: Tensor, weight: Tensor?, bias: Tensor?, bshape: [Int], ghost: Int?) -> (y: Tensor, mean: Tensor, runningSpread: Tensor) {
        let c = numFeatures
        let n = x.count / c
        let reduce = [0] + Array(2..<x.rank)
        precondition(n > 1, "\(layerName): expected more than 1 value per channel when training, got input \(shapeString(x.shape))"
                     + (ghost.map { " (ghost batch \($0) of size \(ghostBatchSize!))" } ?? ""))
        if case .l2 = norm {
            // One fused kernel for statistics, normalisation and the affine transform (a half
            // input with Float32 γ/β runs mixed: see `Tensor.batchNorm`).
            let mixed = x.dtype.isReducedPrecision && weight?.dtype == .float32 && (bias?.dtype ?? .float32) == .float32
            let wv = weight.map { $0.dtype == x.dtype || mixed ? $0 : $0.to(x.dtype) }
            let bv = bias.map { $0.dtype == x.dtype || mixed ? $0 : $0.to(x.dtype) }
            let r = x.batchNorm(weight: wv, bias: bv, eps: eps)
            return (r.output, r.mean, r.variance * (Double(n) / Double(n - 1)))
        }
        let mean = x.mean(dims: reduce, keepDim: true)
        let d = x - mean
        let y: Tensor, spread: Tensor
        switch norm {
        case .l2:
            preconditionFailure("unreachable: L2 uses the fused kernel")
        case .l1:
            let s = d.abs().mean(dims: reduce, keepDim: true) * (Double.pi / 2).squareRoot()
            y = d / (s + eps)
            spread = s.detached() * s.detached()
        case .linf:
            let k = BatchNorm.topK(norm, count: n)
            let rows = d.abs().transposed(0, 1).reshaped([c, n])
            let top = rows.topk(k, dim: 1, sorted: false).values.mean(dim: 1)
            let s = top.reshaped(bshape) * BatchNorm.linfConstant(n)
            y = d / (s + eps)
            spread = s.detached() * s.detached()
        }
        return (y, mean.detached().reshaped([c]), spread.reshaped([c]))
    }
}

/// Batch normalisation over [N, C] or [N, C, L] (PyTorch's `nn.BatchNorm1d`), with the
/// L1 / L∞ variants of Hoffer et al. 2018 and ghost batches; see `BatchNormBase`.
///
/// Statistics per channel over N (and L). weight/bias [C]; running_mean/running_var [C].
public final class BatchNorm1d: BatchNormBase {
    public init(_ features: Int, eps: Double = 1e-5, momentum: Double? = 0.1, affine: Bool = true,
                trackRunningStats: Bool = true, norm: BatchNormKind = .l2, ghostBatchSize: Int? = nil) {
        super.init(features, eps: eps, momentum: momentum, affine: affine, trackRunningStats: trackRunningStats,
                   norm: norm, ghostBatchSize: ghostBatchSize, layer: "BatchNorm1d")
    }

    override func checkInput(_ x: Tensor) {
        precondition((x.rank == 2 || x.rank == 3) && x.shape[1] == numFeatures,
                     "\(layerName): expected input [N, \(numFeatures)] or [N, \(numFeatures), L], got \(shapeString(x.shape))")
    }
}

/// Batch normalisation over [N, C, H, W] (PyTorch's `nn.BatchNorm2d`), with the L1 / L∞
/// variants of Hoffer et al. 2018 and ghost batches; see `BatchNormBase`.
///
/// Statistics per channel over N, H and W. weight/bias [C]; running_mean/running_var [C].
public final class BatchNorm2d: BatchNormBase {
    public init(_ features: Int, eps: Double = 1e-5, momentum: Double? = 0.1, affine: Bool = true,
                trackRunningStats: Bool = true, norm: BatchNormKind = .l2, ghostBatchSize: Int? = nil) {
        super.init(features, eps: eps, momentum: momentum, affine: affine, trackRunningStats: trackRunningStats,
                   norm: norm, ghostBatchSize: ghostBatchSize, layer: "BatchNorm2d")
    }

    override func checkInput(_ x: Tensor) {
        precondition(x.rank == 4 && x.shape[1] == numFeatures,
                     "\(layerName): expected input [N, \(numFeatures), H, W], got \(shapeString(x.shape))")
    }
}
