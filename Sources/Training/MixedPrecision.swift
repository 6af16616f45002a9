import Layers
import TensorCore

/// Errors from bad mixed-precision input: flags, loss-scaler settings, saved scaler state.
///
/// Messages name the bad value and what was expected, e.g.
/// `LossScaler: growthFactor 0.5: expected a finite value > 1` or
/// `--precision fp8: expected fp32, fp16 or bf16`.
public struct MixedPrecisionError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What was rejected.
    public enum Kind: String, Sendable {
        /// A setting (precision flag, scale, factor, interval) is out of range.
        case argument
        /// A saved loss-scaler state does not fit (missing or extra key, shape, dtype, value).
        case stateDict
    }
    /// The category of the error.
    public let kind: Kind
    /// The function or type that rejected the input.
    public let op: String
    /// The bad value and what was expected.
    public let message: String

    /// An error of `kind` raised by `op`.
    public init(_ kind: Kind, op: String, _ message: String) {
        self.kind = kind
        self.op = op
        self.message = message
    }

    /// `op: message`.
    public var description: String { "\(op): \(message)" }
}

// MARK: - Loss scaling

/// Dynamic loss scaling (Micikevicius et al. 2018, "Mixed Precision Training", sec. 3.2;
/// the algorithm of `torch.cuda.amp.GradScaler`).
///
/// Float16 gradients of small magnitude flush to zero. Multiplying the loss by a scale S
/// multiplies every gradient by S (the chain rule is linear), moving them into Float16's
/// range; the Float32 master gradients are divided by S before the optimizer step. S is
/// adapted: a step whose gradients hold an inf or NaN is skipped and S is multiplied by
/// `backoffFactor`; after `growthInterval` consecutive clean steps S is multiplied by
/// `growthFactor`. With the defaults (S₀ = 2¹⁶, factors 2 and 0.5) S stays a power of two, so
/// scaling and unscaling are exact.
///
/// A training step:
/// ```swift
/// scaler.scale(loss).backward()
/// scaler.step(model.parameters) { optimizer.step(...) }   // unscales, skips on overflow
/// scaler.update()
/// ```
public struct LossScaler: Sendable, Equatable {
    /// The current scale S.
    public private(set) var scale: Double
    /// Factor applied to S after `growthInterval` clean steps (> 1).
    public let growthFactor: Double
    /// Factor applied to S after an overflow (in (0, 1)).
    public let backoffFactor: Double
    /// Clean steps between growths (≥ 1).
    public let growthInterval: Int
    /// Clean steps since S last changed.
    public private(set) var growthTracker: Int = 0
    /// Steps attempted (`step` calls), applied or skipped.
    public private(set) var steps: Int = 0
    /// Steps skipped because a gradient was not finite.
    public private(set) var skippedSteps: Int = 0

    /// Whether the gradients of the current iteration were unscaled (by `unscale` or `step`).
    public private(set) var isUnscaled = false
    /// Whether the current iteration found an inf or NaN (valid once unscaled).
    public private(set) var foundNonFinite = false

    /// A scaler with initial scale `initScale` (2¹⁶), `growthFactor` (2), `backoffFactor` (0.5)
    /// and `growthInterval` (2000), torch's defaults.
    ///
    /// Throws when a value is out of range, naming it and the expected range.
    public init(initScale: Double = 65536, growthFactor: Double = 2, backoffFactor: Double = 0.5,
                growthInterval: Int = 2000) throws(MixedPrecisionError) {
        try Self.validate(initScale: initScale, growthFactor: growthFactor, backoffFactor: backoffFactor,
                          growthInterval: growthInterval, op: "LossScaler")
        self.scale = initScale
        self.growthFactor = growthFactor
        self.backoffFactor = backoffFactor
        self.growthInterval = growthInterval
    }

    static func validate(initScale: Double, growthFactor: Double, backoffFactor: Double, growthInterval: Int,
                         op: String) throws(MixedPrecisionError) {
        guard initScale > 0, initScale.isFinite, Float(initScale).isFinite else {
            throw MixedPrecisionError(.argument, op: op, "initScale \(initScale): expected a positive value finite in Float32 (at most \(Float.greatestFiniteMagnitude))")
        }
        guard growthFactor > 1, growthFactor.isFinite else {
            throw MixedPrecisionError(.argument, op: op, "growthFactor \(growthFactor): expected a finite value > 1")
        }
        guard backoffFactor > 0, backoffFactor < 1 else {
            throw MixedPrecisionError(.argument, op: op, "backoffFactor \(backoffFactor): expected a value in (0, 1)")
        }
        guard growthInterval >= 1 else {
            throw MixedPrecisionError(.argument, op: op, "growthInterval \(growthInterval): expected a positive number of steps")
        }
    }

    /// `loss` multiplied by the current scale (recorded, so `backward` yields S times the gradients).
    public func scale(_ loss: Tensor) -> Tensor {
        loss * scale
    }

    /// Divides every gradient in `grads` by the scale in place and reports whether all of
    /// them are finite (no inf, no NaN). Gradients of any floating dtype; nil entries are skipped.
    public static func unscale(_ grads: inout [Tensor?], scale: Double) -> Bool {
        let inverse = 1 / scale
        var finite = true
        for i in grads.indices {
            guard var g = grads[i] else { continue }
            grads[i] = nil  // g is now the only reference: mul_ writes in place
            noGrad { g.mul_(inverse) }
            if finite && !allFinite(g) { finite = false }
            grads[i] = g
        }
        return finite
    }

    /// Unscales the accumulated `.grad` of every parameter in place (dividing by the scale)
    /// and records whether any is not finite (then `step` skips). Call it before gradient
    /// clipping that must see true gradients; `step` calls it when it has not been called.
    /// Traps when called twice in one iteration (the gradients would be divided twice).
    @discardableResult
    public mutating func unscale(_ parameters: [Parameter]) -> Bool {
        precondition(!isUnscaled, "LossScaler.unscale: already called since the last update(); the gradients would be divided by the scale twice")
        var grads: [Tensor?] = parameters.map { $0.grad }
        for p in parameters { p.value.grad = nil }
        let finite = Self.unscale(&grads, scale: scale)
        for (p, g) in zip(parameters, grads) { p.value.grad = g }
        isUnscaled = true
        foundNonFinite = !finite
        return finite
    }

    /// Unscales gradients this scaler cannot see as `.grad` (a fully sharded model's
    /// gradient shards): `body(scale)` divides them by `scale` in place and returns
    /// whether every gradient is finite — on every rank, so that all ranks skip together.
    /// Recorded like `unscale(_:)` (then `step` only decides). Traps when called twice in
    /// one iteration.
    @discardableResult
    public mutating func unscale(using body: (_ scale: Double) throws -> Bool) rethrows -> Bool {
        precondition(!isUnscaled, "LossScaler.unscale: already called since the last update(); the gradients would be divided by the scale twice")
        let finite = try body(scale)
        isUnscaled = true
        foundNonFinite = !finite
        return finite
    }

    /// Unscales the gradients (unless `unscale` already did) and runs `apply` (the optimizer
    /// step) only when every gradient is finite. Returns whether the step was applied; a
    /// skipped step is counted in `skippedSteps`. Call `update()` afterwards.
    @discardableResult
    public mutating func step(_ parameters: [Parameter], _ apply: () throws -> Void) rethrows -> Bool {
        if !isUnscaled { unscale(parameters) }
        steps += 1
        if foundNonFinite {
            skippedSteps += 1
            return false
        }
        try apply()
        return true
    }

    /// Adapts the scale after a step: backs off after an overflow (S ← S · backoffFactor,
    /// tracker reset), else counts a clean step and grows S ← S · growthFactor after
    /// `growthInterval` of them. S never grows past Float32's range and never shrinks to a
    /// value that is not a positive normal Float32. Ends the iteration.
    public mutating func update() {
        precondition(isUnscaled, "LossScaler.update: no step or unscale since the last update(); call step(_:_:) first")
        if foundNonFinite {
            let next = scale * backoffFactor
            if Float(next) >= Float.leastNormalMagnitude { scale = next }
            growthTracker = 0
        } else {
            growthTracker += 1
            if growthTracker >= growthInterval {
                let next = scale * growthFactor
                if Float(next).isFinite { scale = next }
                growthTracker = 0
            }
        }
        isUnscaled = false
        foundNonFinite = false
    }

    /// Whether every element of `t` is finite (a plain loop over Float32 storage; other dtypes
    /// are widened to Float32 first).
    public static func allFinite(_ t: Tensor) -> Bool {
        precondition(t.dtype.isFloatingPoint, "LossScaler.allFinite: expected a floating-point tensor, got \(t.dtype)")
        var f = t.dtype == .float32 ? t : noGrad { t.to(.float32) }
        if !f.isContiguous { f = noGrad { f.contiguous() } }
        let n = f.count, start = f.offset
        return f.withStoragePointer(Float.self) { p in
            let base = p + start
            var i = 0
            // Blocks of 256: x − x is 0 for finite x and NaN for inf/NaN, so a block sum is NaN
            // exactly when the block holds a non-finite value (no early exit inside the block).
            while i + 256 <= n {
                var acc: Float = 0
                for k in i..<(i + 256) { acc += base[k] - base[k] }
                if acc != 0 { return false }
                i += 256
            }
            while i < n {
                if !base[i].isFinite { return false }
                i += 1
            }
            return true
        }
    }

    // MARK: State dictionary

    /// Keys of `stateDict()`: torch's GradScaler names plus the two counters.
    public static let stateKeys = ["scale", "growth_factor", "backoff_factor", "growth_interval", "growth_tracker",
                                   "steps", "skipped_steps"]

    /// The state as 0-d tensors (Float64 for `scale` and the factors, Int64 for the counts), to
    /// be saved next to the model and optimizer; `loadStateDict` continues the run exactly.
    public func stateDict() -> [String: Tensor] {
        ["scale": Tensor(scalar: scale), "growth_factor": Tensor(scalar: growthFactor),
         "backoff_factor": Tensor(scalar: backoffFactor), "growth_interval": Tensor(scalar: Int64(growthInterval)),
         "growth_tracker": Tensor(scalar: Int64(growthTracker)), "steps": Tensor(scalar: Int64(steps)),
         "skipped_steps": Tensor(scalar: Int64(skippedSteps))]
    }

    /// A scaler restored from `stateDict()` output.
    ///
    /// Throws when a key is missing or unexpected, a value is not a one-element tensor of the
    /// expected dtype (Float64 for `scale`, `growth_factor`, `backoff_factor`; Int64 for the
    /// rest), or a value is out of range; the error names the key and what was expected.
    public init(stateDict d: [String: Tensor]) throws(MixedPrecisionError) {
        let op = "LossScaler.loadStateDict"
        for key in Self.stateKeys where d[key] == nil {
            throw MixedPrecisionError(.stateDict, op: op, "missing key '\(key)' (expected keys \(Self.stateKeys.joined(separator: ", ")))")
        }
        if let extra = d.keys.sorted().first(where: { !Self.stateKeys.contains($0) }) {
            throw MixedPrecisionError(.stateDict, op: op, "unexpected key '\(extra)' (expected keys \(Self.stateKeys.joined(separator: ", ")))")
        }
        func value(_ key: String, _ dtype: DType) throws(MixedPrecisionError) -> Double {
            let t = d[key]!
            guard t.count == 1 else {
                throw MixedPrecisionError(.stateDict, op: op, "key '\(key)': expected shape [], found \(shapeString(t.shape))")
            }
            guard t.dtype == dtype else {
                throw MixedPrecisionError(.stateDict, op: op, "key '\(key)': expected dtype \(dtype), found \(t.dtype)")
            }
            return t.item()
        }
        func count(_ key: String, min: Int) throws(MixedPrecisionError) -> Int {
            let v = try value(key, .int64)
            guard v >= Double(min) else {
                throw MixedPrecisionError(.stateDict, op: op, "key '\(key)': expected an integer ≥ \(min), found \(Int64(v))")
            }
            return Int(v)
        }
        let scale = try value("scale", .float64)
        try Self.validate(initScale: scale, growthFactor: try value("growth_factor", .float64),
                          backoffFactor: try value("backoff_factor", .float64),
                          growthInterval: try count("growth_interval", min: 1), op: op)
        try self.init(initScale: scale, growthFactor: try value("growth_factor", .float64),
                      backoffFactor: try value("backoff_factor", .float64), growthInterval: try count("growth_interval", min: 1))
        growthTracker = try count("growth_tracker", min: 0)
        steps = try count("steps", min: 0)
        skippedSteps = try count("skipped_steps", min: 0)
        guard skippedSteps <= steps else {
            throw MixedPrecisionError(.stateDict, op: op, "key 'skipped_steps': \(skippedSteps) exceeds 'steps' \(steps)")
        }
    }

    /// Replaces this scaler's state with `stateDict` (see `init(stateDict:)`); nothing changes
    /// when it throws.
    public mutating func loadStateDict(_ stateDict: [String: Tensor]) throws(MixedPrecisionError) {
        self = try LossScaler(stateDict: stateDict)
    }
}

// MARK: - Configuration and the step helper

/// How a training run uses reduced precision: off (Float32), or Float16 / BFloat16
/// activations and weight copies over Float32 master weights (Micikevicius et al. 2018).
///
/// The model's parameters, gradients and optimizer state stay Float32. Under a half setting
/// the forward pass runs in `withAutocast` (see `AutocastPolicy` for the per-op rules), the
/// logits are widened and the loss computed in Float32, and with Float16 the loss is scaled
/// dynamically (`LossScaler`); BFloat16 has Float32's exponent range and needs no scaling.
/// On this CPU half types are storage only, so the gain is memory (activations saved for
/// backward take about half the bytes), not speed: every kernel converts to Float32 and back.
public struct MixedPrecision: Sendable, Equatable, CustomStringConvertible {
    /// The half type, or nil for plain Float32 training.
    public var precision: HalfPrecision?
    /// L1 / L∞ batch norm on the half input (`AutocastPolicy.halfBatchNorm`); L2 always uses Float32.
    public var halfBatchNorm: Bool

    /// Float32 training (no autocast, no scaling).
    public static let off = MixedPrecision(nil)

    /// A setting; `precision` nil is Float32.
    public init(_ precision: HalfPrecision?, halfBatchNorm: Bool = false) {
        self.precision = precision
        self.halfBatchNorm = halfBatchNorm
    }

    /// Parses a `--precision` value: `fp32` (or `float32`), `fp16` (`float16`), `bf16` (`bfloat16`).
    public init(parsing flag: String, halfBatchNorm: Bool = false) throws(MixedPrecisionError) {
        switch flag.lowercased() {
        case "fp32", "float32": self.init(nil, halfBatchNorm: halfBatchNorm)
        case "fp16", "float16", "half": self.init(.float16, halfBatchNorm: halfBatchNorm)
        case "bf16", "bfloat16": self.init(.bfloat16, halfBatchNorm: halfBatchNorm)
        default: throw MixedPrecisionError(.argument, op: "--precision", "'\(flag)': expected fp32, fp16 or bf16")
        }
    }

    /// The flag spelling: fp32, fp16 or bf16.
    public var flag: String {
        switch precision {
        case nil: return "fp32"
        case .float16: return "fp16"
        case .bfloat16: return "bf16"
        }
    }

    /// The flag, with a note when L1 / L∞ batch norm runs in half.
    public var description: String { flag + (halfBatchNorm && precision != nil ? " (half L1/L∞ batch norm)" : "") }

    /// The autocast policy of the forward pass (nil when off).
    public var policy: AutocastPolicy? { precision.map { AutocastPolicy($0, halfBatchNorm: halfBatchNorm) } }

    /// Whether this setting needs dynamic loss scaling (Float16 only).
    public var needsLossScaling: Bool { precision == .float16 }

    /// A loss scaler with torch's defaults when the setting needs one (Float16), else nil.
    public func makeLossScaler(initScale: Double = 65536, growthFactor: Double = 2, backoffFactor: Double = 0.5,
                               growthInterval: Int = 2000) throws(MixedPrecisionError) -> LossScaler? {
        guard needsLossScaling else { return nil }
        return try LossScaler(initScale: initScale, growthFactor: growthFactor, backoffFactor: backoffFactor,
                              growthInterval: growthInterval)
    }

    /// `body` (the forward pass) under this setting's autocast policy; plain call when off.
    public func autocast<R>(_ body: () throws -> R) rethrows -> R {
        guard let policy else { return try body() }
        return try withAutocast(policy, body)
    }

    /// The model's logits under autocast, widened to Float32 (recorded), and `loss(logits)`
    /// computed outside autocast in Float32. When off, exactly `model(inputs)` and `loss`.
    public func forward(_ model: Module, _ inputs: Tensor, loss: (Tensor) -> Tensor) -> (logits: Tensor, loss: Tensor) {
        guard precision != nil else {
            let logits = model(inputs)
            return (logits, loss(logits))
        }
        let logits = Autocast.widen(autocast { model(inputs) })
        return (logits, loss(logits))
    }

    /// Backpropagates `loss` and applies `step` (the optimizer update): with a scaler, the loss
    /// is scaled, the gradients unscaled, the step skipped on overflow and the scale updated;
    /// without one, plain `loss.backward()` and `step()`. Returns whether the step was applied.
    ///
    /// With micro-batches (gradient accumulation) use the scaler's parts instead: backpropagate
    /// `scaler.scale(loss)` for every micro-batch, then `step` once and `update` once. With
    /// data parallelism, unscale after the gradients were averaged (an inf on any rank then
    /// reaches all ranks, so all skip together); a sharded optimizer that sees only its shard's
    /// gradients must also combine the overflow flag over ranks before deciding.
    @discardableResult
    public static func backward(_ loss: Tensor, scaler: inout LossScaler?, parameters: [Parameter],
                                step: () throws -> Void) rethrows -> Bool {
        guard var s = scaler else {
            loss.backward()
            try step()
            return true
        }
        s.scale(loss).backward()
        let applied = try s.step(parameters, step)
        s.update()
        scaler = s
        return applied
    }
}
