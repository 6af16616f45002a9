import TensorCore

/// Loss functions with PyTorch's functional definitions, defaults and reductions
/// (`torch.nn.functional.cross_entropy`, `nll_loss`, `mse_loss`, `smooth_l1_loss`,
/// `binary_cross_entropy_with_logits`). All are composed of differentiable ops.
///
/// Under `withAutocast`, half inputs (logits, predictions, targets, weights) are widened to
/// Float32 first, so the softmax, logarithms and reductions run and return in Float32
/// (Micikevicius et al. 2018: reductions and losses stay in single precision).
public enum Loss {
    /// How per-element losses are combined: kept (`none`), summed, or averaged (`mean`, the default).
    public enum Reduction: Sendable, Equatable {
        case none, mean, sum
    }

    /// `t` widened to Float32 when autocast is on and `t` has a half type; `t` otherwise.
    static func float32UnderAutocast(_ t: Tensor) -> Tensor {
        Autocast.isEnabled ? Autocast.widen(t) : t
    }

    static func reduce(_ t: Tensor, _ r: Reduction) -> Tensor {
        switch r {
        case .none: return t
        case .sum: return t.sum()
        case .mean: return t.mean()
        }
    }

    // MARK: - Classification

    /// Cross-entropy between `logits` ([N, C] or [N, C, d1, ...]) and integer class `targets`
    /// ([N] or [N, d1, ...], Int64 or Int32), as `F.cross_entropy`.
    ///
    /// With log-probabilities p = logSoftmax(logits) over C, class weights w (default 1) and
    /// ε = `labelSmoothing`, the loss of sample i with target y is
    /// ℓᵢ = (1 − ε) · (−w_y p_{i,y}) + ε / C · (−Σ_c w_c p_{i,c}),
    /// and 0 for targets equal to `ignoreIndex`. `.mean` divides the sum by Σ w_{yᵢ} over
    /// non-ignored samples (PyTorch's weighted mean; NaN when every target is ignored), `.sum`
    /// sums, `.none` returns ℓ with the targets' shape. A target outside 0..<C that is not the
    /// ignore index traps naming the label, its position and C. Unlike PyTorch, whose
    /// `ignore_index` defaults to -100, nothing is ignored unless `ignoreIndex` is given
    /// (pass -100 for PyTorch's behaviour), so a stray -100 label is reported, not skipped.
    public static func crossEntropy(logits: Tensor, targets: Tensor, weight: Tensor? = nil, ignoreIndex: Int? = nil,
                                    labelSmoothing: Double = 0, reduction: Reduction = .mean) -> Tensor {
        let logits = float32UnderAutocast(logits), weight = weight.map(float32UnderAutocast)
        precondition(labelSmoothing >= 0 && labelSmoothing <= 1, "crossEntropy: labelSmoothing \(labelSmoothing) must be in [0, 1]")
        precondition(logits.dtype.isFloatingPoint, "crossEntropy: logits must be floating point, got \(logits.dtype)")
        let (rows, flatTargets, outShape) = flattenClassification(logits, targets, op: "crossEntropy")
        let logp = rows.logSoftmax(dim: 1)
        return weightedNLL(logp, flatTargets, outShape: outShape, weight: weight, ignoreIndex: ignoreIndex,
                           labelSmoothing: labelSmoothing, reduction: reduction, op: "crossEntropy")
    }

    /// Negative log-likelihood of integer `targets` under log-probabilities `logProbs`
    /// ([N, C] or [N, C, d1, ...]), as `F.nll_loss`: ℓᵢ = −w_{yᵢ} · logProbs[i, yᵢ], 0 for
    /// ignored targets; `.mean` divides by Σ w_{yᵢ} over non-ignored samples.
    public static func nllLoss(logProbs: Tensor, targets: Tensor, weight: Tensor? = nil, ignoreIndex: Int? = nil,
                               reduction: Reduction = .mean) -> Tensor {
        let logProbs = float32UnderAutocast(logProbs), weight = weight.map(float32UnderAutocast)
        precondition(logProbs.dtype.isFloatingPoint, "nllLoss: logProbs must be floating point, got \(logProbs.dtype)")
        let (rows, flatTargets, outShape) = flattenClassification(logProbs, targets, op: "nllLoss")
        return weightedNLL(rows, flatTargets, outShape: outShape, weight: weight, ignoreIndex: ignoreIndex,
                           labelSmoothing: 0, reduction: reduction, op: "nllLoss")
    }

    /// Moves the class dim last and flattens: ([M, C] scores, [M] targets, the targets' shape).
    static func flattenClassification(_ scores: Tensor, _ targets: Tensor, op: String) -> (Tensor, Tensor, [Int]) {
        precondition(targets.dtype == .int64 || targets.dtype == .int32,
                     "\(op): targets must be int64 or int32 class indices, got \(targets.dtype) (shape \(shapeString(targets.shape)))")
        precondition(scores.rank >= 2, "\(op): expected input [N, C] or [N, C, d1, ...], got \(shapeString(scores.shape))")
        let c = scores.shape[1]
        var expected = scores.shape
        expected.remove(at: 1)
        precondition(targets.shape == expected,
                     "\(op): input \(shapeString(scores.shape)) needs targets of shape \(shapeString(expected)), got \(shapeString(targets.shape))")
        let rows: Tensor
        if scores.rank == 2 {
            rows = scores
        } else {
            var perm = [0] + Array(2..<scores.rank)
            perm.append(1)
            rows = scores.permuted(perm).reshaped([-1, c])
        }
        return (rows, targets.reshaped([targets.count]), targets.shape)
    }

    /// The first target (flat position, label) outside 0..<classes that is not `ignoreIndex`, or nil.
    static func firstBadTarget(_ targets: Tensor, classes: Int, ignoreIndex: Int?) -> (index: Int, label: Int64)? {
        let values = targets.scalars(as: Int64.self)
        for (i, t) in values.enumerated() {
            if let ig = ignoreIndex, t == Int64(ig) { continue }
            if t < 0 || t >= Int64(classes) { return (i, t) }
        }
        return nil
    }

    /// The message for a bad target (shared by the precondition and tests).
    static func badTargetMessage(op: String, index: Int, label: Int64, classes: Int, targetShape: [Int], ignoreIndex: Int?) -> String {
        "\(op): target \(label) at index \(index) (targets \(shapeString(targetShape))) is out of range for \(classes) classes"
            + " (valid: 0..<\(classes)\(ignoreIndex.map { " or ignoreIndex \($0)" } ?? ""))"
    }

    static func weightedNLL(_ logp: Tensor, _ targets: Tensor, outShape: [Int], weight: Tensor?, ignoreIndex: Int?,
                            labelSmoothing eps: Double, reduction: Reduction, op: String) -> Tensor {
        let c = logp.shape[1]
        if let (index, label) = firstBadTarget(targets, classes: c, ignoreIndex: ignoreIndex) {
            preconditionFailure(badTargetMessage(op: op, index: index, label: label, classes: c, targetShape: outShape, ignoreIndex: ignoreIndex))
        }
        if let weight {
            precondition(weight.shape == [c], "\(op): weight must have shape [\(c)] (one per class), got \(shapeString(weight.shape))")
            precondition(weight.dtype == logp.dtype, "\(op): weight dtype \(weight.dtype) differs from input dtype \(logp.dtype)")
        }
        let dt = logp.dtype
        let idx = targets.dtype == .int64 ? targets : targets.to(.int64)
        // Ignored positions read class 0 and are then multiplied by 0.
        let ignored: Tensor? = ignoreIndex.map { idx.eq(Double($0)) }
        let safe = ignored.map { Tensor.where($0, Tensor(scalar: Int64(0)), idx) } ?? idx
        let valid = ignored.map { Tensor.where($0, Tensor.zeros([], dtype: dt), Tensor.ones([], dtype: dt)) }
        // Per-sample weight of the target class, zero where ignored: [M].
        var w: Tensor? = weight.map { $0.indexSelect(dim: 0, index: safe) }
        if let valid { w = w.map { $0 * valid } ?? valid }
        let picked = logp.gather(dim: 1, index: safe.reshaped([-1, 1])).reshaped([-1])
        var nll = -picked
        if let w { nll = nll * w }
        var loss = nll
        if eps > 0 {
            var smooth = -(weight.map { logp * $0.reshaped([1, c]) } ?? logp).sum(dim: 1)
            if let valid { smooth = smooth * valid }
            loss = nll * (1 - eps) + smooth * (eps / Double(c))
        }
        switch reduction {
        case .none: return loss.reshaped(outShape)
        case .sum: return loss.sum()
        case .mean:
            if let w { return loss.sum() / w.sum() }
            return loss.mean()
        }
    }

    // MARK: - Regression

    /// Mean squared error (input − target)², as `F.mse_loss`. Shapes must match.
    public static func mseLoss(_ input: Tensor, _ target: Tensor, reduction: Reduction = .mean) -> Tensor {
        let input = float32UnderAutocast(input), target = float32UnderAutocast(target)
        checkSameShape(input, target, op: "mseLoss")
        let d = input - target
        return reduce(d * d, reduction)
    }

    /// Smooth L1 (Huber-like) loss, as `F.smooth_l1_loss`: with d = input − target,
    /// 0.5 d² / beta where |d| < beta, |d| − 0.5 beta elsewhere; beta = 0 gives |d|.
    public static func smoothL1Loss(_ input: Tensor, _ target: Tensor, beta: Double = 1, reduction: Reduction = .mean) -> Tensor {
        precondition(beta >= 0, "smoothL1Loss: beta \(beta) must be non-negative")
        let input = float32UnderAutocast(input), target = float32UnderAutocast(target)
        checkSameShape(input, target, op: "smoothL1Loss")
        let d = input - target
        let a = d.abs()
        if beta == 0 { return reduce(a, reduction) }
        let loss = Tensor.where(a.lt(beta), d * d * (0.5 / beta), a - 0.5 * beta)
        return reduce(loss, reduction)
    }

    // MARK: - Binary

    /// Binary cross-entropy on logits, as `F.binary_cross_entropy_with_logits`.
    ///
    /// With x the logits and y the targets in [0, 1]: ℓ = (1 − y) x + L · softplus(−x),
    /// L = 1 + (posWeight − 1) y (posWeight broadcasts over the last dim, one per class;
    /// L = 1 without it), which without posWeight equals max(x, 0) − x y + log(1 + exp(−|x|)).
    /// softplus is evaluated as m + log(exp(−m) + exp(x − m)) with m = max(x, 0) held constant,
    /// so it is finite for any logit and its gradient is exactly sigmoid(x) everywhere.
    /// `weight` (broadcast) rescales each element.
    public static func binaryCrossEntropyWithLogits(_ logits: Tensor, _ targets: Tensor, weight: Tensor? = nil,
                                                    posWeight: Tensor? = nil, reduction: Reduction = .mean) -> Tensor {
        let logits = float32UnderAutocast(logits), targets = float32UnderAutocast(targets)
        let weight = weight.map(float32UnderAutocast), posWeight = posWeight.map(float32UnderAutocast)
        checkSameShape(logits, targets, op: "binaryCrossEntropyWithLogits")
        precondition(logits.dtype.isFloatingPoint, "binaryCrossEntropyWithLogits: logits must be floating point, got \(logits.dtype)")
        var loss: Tensor
        if let pw = posWeight {
            let logWeight = (pw - 1) * targets + 1
            loss = (1 - targets) * logits + logWeight * softplus(-logits)
        } else {
            loss = softplus(logits) - logits * targets
        }
        if let weight { loss = loss * weight }
        return reduce(loss, reduction)
    }

    /// log(1 + exp(x)) without overflow; the max is detached, which keeps the gradient exact.
    static func softplus(_ x: Tensor) -> Tensor {
        let m = x.detached().relu()
        return m + ((-m).exp() + (x - m).exp()).log()
    }

    static func checkSameShape(_ a: Tensor, _ b: Tensor, op: String) {
        precondition(a.shape == b.shape, "\(op): input \(shapeString(a.shape)) and target \(shapeString(b.shape)) must have the same shape")
        precondition(a.dtype == b.dtype, "\(op): input dtype \(a.dtype) and target dtype \(b.dtype) differ")
    }
}
