import TensorCore

/// The state of a gradient transformation: named tensor slots per parameter and a step counter.
///
/// `slots[i]` holds the tensors kept for parameter `i` under names such as `"momentum"`,
/// `"exp_avg"` and `"exp_avg_sq"` (PyTorch's names); `step` counts the updates applied so
/// far (0 before the first). A state converts to and from a flat dictionary with stable
/// keys — `"<index>.<slot>"` for slots (`"0.momentum"`, `"3.exp_avg"`) and `"step"` for the
/// counter (a 0-d Int64 tensor) — so it can be saved in a safetensors file next to the model
/// and restored bit for bit.
public struct OptimizerState: Sendable {
    /// Updates applied so far (0 before the first update).
    public var step: Int
    /// Per-parameter named slots: `slots[i][name]`.
    public var slots: [[String: Tensor]]

    /// The key of the step counter in `dictionary()`.
    public static let stepKey = "step"

    /// An empty state (no slots) for `parameterCount` parameters.
    public init(parameterCount: Int, step: Int = 0) {
        precondition(parameterCount >= 0, "OptimizerState: negative parameter count \(parameterCount)")
        self.step = step
        self.slots = Array(repeating: [:], count: parameterCount)
    }

    /// Number of parameters this state is for.
    public var parameterCount: Int { slots.count }

    /// The dictionary key of slot `name` of parameter `index`, e.g. `"3.exp_avg"`.
    public static func key(param index: Int, slot name: String) -> String { "\(index).\(name)" }

    /// The tensor in slot `name` of parameter `index`, if any.
    public func slot(_ name: String, param index: Int) -> Tensor? { slots[index][name] }

    /// Runs `body` with slot `name` of parameter `index` moved out of the state, so that
    /// in-place ops on it (`mul_`, `add_`) write into its storage instead of copying it.
    /// Traps when the slot does not exist (the state was not made by this transformation's
    /// `initState`).
    public mutating func withSlot<R>(_ name: String, param index: Int, _ body: (inout Tensor) throws -> R) rethrows -> R {
        guard var t = slots[index].removeValue(forKey: name) else {
            preconditionFailure("optimizer state: parameter \(index) has no slot '\(name)' (slots: \(slots[index].keys.sorted())); was the state made by this transformation's initState?")
        }
        defer { slots[index][name] = t }
        return try body(&t)
    }

    /// Adds a slot of zeros shaped like `param` (charged to `.optimizerState`) to every parameter.
    mutating func addZeroSlot(_ name: String, like params: [Tensor]) {
        precondition(params.count == slots.count, "optimizer state: \(params.count) parameters for a state of \(slots.count)")
        Memory.withTag(.optimizerState) {
            for (i, p) in params.enumerated() {
                slots[i][name] = Tensor.zeros(p.shape, dtype: p.dtype)
            }
        }
    }

    /// Adds all slots of `other` (same parameter count); traps when a slot name is used twice.
    mutating func merge(_ other: OptimizerState, op: String) {
        precondition(other.parameterCount == parameterCount,
                     "\(op): a member's state holds \(other.parameterCount) parameters, expected \(parameterCount)")
        for i in slots.indices {
            for (name, t) in other.slots[i] {
                precondition(slots[i][name] == nil,
                             "\(op): slot '\(name)' of parameter \(i) is used by two transformations; give one of them a different slot name")
                slots[i][name] = t
            }
        }
    }

    /// Moves the slots of the parameters at `indices` into a new state (renumbered 0..<k).
    mutating func take(_ indices: [Int]) -> OptimizerState {
        var sub = OptimizerState(parameterCount: indices.count, step: step)
        for (k, i) in indices.enumerated() {
            swap(&sub.slots[k], &slots[i])
        }
        return sub
    }

    /// Moves the slots of `sub` (made by `take(indices)`) back to their parameters.
    mutating func put(_ sub: inout OptimizerState, at indices: [Int]) {
        for (k, i) in indices.enumerated() {
            swap(&sub.slots[k], &slots[i])
        }
    }
}

// MARK: - Flat dictionary form

extension OptimizerState {
    /// The state as a flat dictionary: `"<index>.<slot>"` -> tensor and `"step"` -> 0-d Int64.
    ///
    /// Slot tensors are shared with the state (no copy); the state copies on its next
    /// in-place update, so the dictionary keeps the values it had when it was taken.
    public func dictionary() -> [String: Tensor] {
        var d: [String: Tensor] = [:]
        for (i, s) in slots.enumerated() {
            for (name, t) in s { d[Self.key(param: i, slot: name)] = t.detached() }
        }
        d[Self.stepKey] = Tensor(scalar: Int64(step))
        return d
    }

    /// Replaces this state's values with those in `dictionary`, which must hold exactly this
    /// state's keys with the same shapes and dtypes (as written by `dictionary()`).
    ///
    /// Nothing changes when it throws. The error names the key, the expected and the found
    /// shape (or dtype), e.g. `loadStateDict: key '3.exp_avg': expected shape [64, 3], found [96, 3]`.
    /// Loaded tensors are copied into fresh storage charged to `.optimizerState`.
    public mutating func load(_ dictionary: [String: Tensor]) throws(OptimizerError) {
        let op = "loadStateDict"
        // Step counter.
        guard let stepTensor = dictionary[Self.stepKey] else {
            throw OptimizerError(.stateDict, op: op, "missing key '\(Self.stepKey)' (the step counter, a one-element integer tensor)")
        }
        guard stepTensor.count == 1 else {
            throw OptimizerError(.stateDict, op: op, "key '\(Self.stepKey)': expected shape [], found \(shapeString(stepTensor.shape))")
        }
        let stepValue = stepTensor.item()
        guard stepValue >= 0, stepValue.rounded() == stepValue, stepValue < 9.0e15 else {
            throw OptimizerError(.stateDict, op: op, "key '\(Self.stepKey)': expected a non-negative integer, found \(stepValue)")
        }
        // Slots: validate everything before changing anything.
        var expectedKeys: Set<String> = [Self.stepKey]
        for i in slots.indices {
            for name in slots[i].keys.sorted() {
                let key = Self.key(param: i, slot: name)
                expectedKeys.insert(key)
                let want = slots[i][name]!
                guard let found = dictionary[key] else {
                    throw OptimizerError(.stateDict, op: op, "missing key '\(key)' (expected shape \(shapeString(want.shape)), \(want.dtype))")
                }
                guard found.shape == want.shape else {
                    throw OptimizerError(.stateDict, op: op, "key '\(key)': expected shape \(shapeString(want.shape)), found \(shapeString(found.shape))")
                }
                guard found.dtype == want.dtype else {
                    throw OptimizerError(.stateDict, op: op, "key '\(key)': expected dtype \(want.dtype), found \(found.dtype)")
                }
            }
        }
        let extra = dictionary.keys.filter { !expectedKeys.contains($0) }.sorted()
        if let first = extra.first {
            let known = expectedKeys.sorted()
            let shown = known.prefix(8).joined(separator: ", ") + (known.count > 8 ? ", ... (\(known.count) keys)" : "")
            throw OptimizerError(.stateDict, op: op, "unexpected key '\(first)'\(extra.count > 1 ? " (and \(extra.count - 1) more)" : ""); this optimizer's keys are \(shown)")
        }
        // Commit.
        Memory.withTag(.optimizerState) {
            for i in slots.indices {
                for name in Array(slots[i].keys) {
                    slots[i][name] = ownedCopy(dictionary[Self.key(param: i, slot: name)]!)
                }
            }
        }
        step = Int(stepValue)
    }

    /// Builds a state from `dictionary`, checking it against `template` (usually the
    /// `initState` of the same transformation for the same parameters).
    public init(dictionary: [String: Tensor], matching template: OptimizerState) throws(OptimizerError) {
        self = template
        try load(dictionary)
    }
}

/// A dense copy of `t` with fresh storage (charged to the current memory tag), bit for bit.
func ownedCopy(_ t: Tensor) -> Tensor {
    let src = t.detached()
    switch src.dtype {
    case .float32: return try! Tensor(src.scalars(as: Float.self), shape: src.shape)
    case .float64: return try! Tensor(src.scalars(as: Double.self), shape: src.shape)
    case .float16: return try! Tensor(src.scalars(as: Float16.self), shape: src.shape)
    // bfloat16 -> float32 -> bfloat16 is exact (every bfloat16 is a float32).
    case .bfloat16: return src.to(.float32).to(.bfloat16).detached()
    case .int32: return try! Tensor(src.scalars(as: Int32.self), shape: src.shape)
    case .int64: return try! Tensor(src.scalars(as: Int64.self), shape: src.shape)
    case .uint8: return try! Tensor(src.scalars(as: UInt8.self), shape: src.shape)
    case .bool: return try! Tensor(src.scalars(as: Bool.self), shape: src.shape)
    }
}
