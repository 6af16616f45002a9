/// The reduced floating-point type an autocast region computes in.
///
/// Both are storage types in Loom: kernels widen them to Float32, compute, and round the
/// result once. Float16 (IEEE binary16: 10-bit mantissa, largest finite 65504, smallest
/// normal 6.1e-5) is the more precise of the two but has a narrow range, so its gradients
/// need loss scaling (Micikevicius et al. 2018, "Mixed Precision Training"); BFloat16
/// (8-bit mantissa, Float32's exponent range) needs no scaling but rounds more coarsely.
public enum HalfPrecision: String, Sendable, CaseIterable, Codable, CustomStringConvertible {
    case float16, bfloat16

    /// The tensor dtype of this precision.
    public var dtype: DType {
        switch self {
        case .float16: return .float16
        case .bfloat16: return .bfloat16
        }
    }

    /// The raw value: "float16" or "bfloat16".
    public var description: String { rawValue }
}

/// Per-op precision rules for an autocast region (like `torch.autocast`, but explicit).
///
/// Inside `withAutocast(policy) { ... }`:
/// - GEMM-based layers (`Linear`, `Conv2d`) cast their input and their Float32 master weight
///   and bias to `precision` with the differentiable `Tensor.to(_:)`, so gradients flow back in
///   Float32 to the master parameters, and return half outputs. What their VJPs save (input,
///   weight copy) is half-sized; so is what following activations, pools and dropout save,
///   since those follow their input dtype.
/// - BatchNorm with the L2 norm computes statistics, normalisation and the affine transform in
///   Float32 (its input is widened; only the half input is kept for backward, which recomputes
///   in Float32) and returns a half output. The sum of squares overflows Float16 as soon as a
///   deviation exceeds 255.9, and small variances underflow.
/// - BatchNorm with the L1 or L∞ norm does the same unless `halfBatchNorm` is true; then it
///   runs on the half input directly. Hoffer et al. 2018 ("Norm matters: efficient and
///   accurate normalization schemes in deep networks", sec. 4–5) show that L1 and L∞ batch
///   norm are numerically stable in half precision: they never square a deviation, so their
///   terms stay within the range of the input itself.
/// - Losses (cross-entropy, NLL, MSE, ...) and the softmax / log-softmax inside them widen
///   half inputs to Float32. Reductions on half tensors already accumulate in Float32 inside
///   their kernels and round once.
///
/// On this CPU, half types are storage only (every kernel converts to Float32 and back), so
/// autocast saves memory, not time: the tensors kept for backward take about half the bytes
/// (convnet-bn, batch 128: 106 MiB → 60 MiB after the forward pass), while the conversions
/// make a step slower (about 1.35x for both half types: extra whole-tensor conversion
/// passes). The conversions also allocate transient Float32 copies inside the half kernels,
/// so the step's peak falls less than the saved activations (123 MiB → 90 MiB). Numbers and
/// commands: BENCHMARKS.md, "Low-memory training".
public struct AutocastPolicy: Sendable, Equatable, CustomStringConvertible {
    /// The type GEMM-based layers compute in.
    public var precision: HalfPrecision
    /// Whether L1 / L∞ batch norm runs on the half input (true) or widens it to Float32
    /// (false, the default). L2 batch norm always uses Float32.
    public var halfBatchNorm: Bool

    /// A policy computing in `precision`; `halfBatchNorm` as documented on the property.
    public init(_ precision: HalfPrecision, halfBatchNorm: Bool = false) {
        self.precision = precision
        self.halfBatchNorm = halfBatchNorm
    }

    /// The dtype of `precision`.
    public var dtype: DType { precision.dtype }

    /// `autocast(float16)`, `autocast(bfloat16, halfBatchNorm)`.
    public var description: String { "autocast(\(precision)\(halfBatchNorm ? ", halfBatchNorm" : ""))" }
}

/// The task-local autocast state and the casts layers use to follow it.
public enum Autocast {
    /// The policy of the innermost `withAutocast` region on this task/thread, or nil.
    @TaskLocal public static var policy: AutocastPolicy? = nil

    /// Whether an autocast region is active.
    public static var isEnabled: Bool { policy != nil }

    /// `t` cast to the active policy's half type when autocast is on and `t` is Float32 or the
    /// other half type (recorded: the gradient flows back in `t`'s type); `t` itself otherwise.
    ///
    /// Float64 and integer tensors are left alone (as in `torch.autocast`, Float64 is not
    /// eligible for lower precision).
    @inlinable
    public static func narrow(_ t: Tensor) -> Tensor {
        guard let p = policy, t.dtype == .float32 || t.dtype.isReducedPrecision else { return t }
        return t.to(p.dtype)
    }

    /// `t` widened to Float32 when it has a reduced type (recorded); `t` itself otherwise.
    /// Used by ops that must compute in Float32 (losses, softmax) whether or not autocast is on
    /// for the caller.
    @inlinable
    public static func widen(_ t: Tensor) -> Tensor {
        t.dtype.isReducedPrecision ? t.to(.float32) : t
    }
}

/// Runs `body` with autocast on: layers compute in `precision` following `AutocastPolicy`.
///
/// ```swift
/// let logits = withAutocast(.float16) { model(x) }        // half activations
/// let loss = Loss.crossEntropy(logits: logits, targets: y) // Float32
/// ```
@discardableResult
public func withAutocast<R>(_ precision: HalfPrecision, halfBatchNorm: Bool = false, _ body: () throws -> R) rethrows -> R {
    try Autocast.$policy.withValue(AutocastPolicy(precision, halfBatchNorm: halfBatchNorm)) { try body() }
}

/// Runs `body` under `policy`; nil turns autocast off inside `body`.
@discardableResult
public func withAutocast<R>(_ policy: AutocastPolicy?, _ body: () throws -> R) rethrows -> R {
    try Autocast.$policy.withValue(policy) { try body() }
}

/// Runs `body` with autocast off (for a region that must stay in Float32).
@discardableResult
public func withoutAutocast<R>(_ body: () throws -> R) rethrows -> R {
    try Autocast.$policy.withValue(nil) { try body() }
}
