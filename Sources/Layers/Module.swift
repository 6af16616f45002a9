import TensorCore

/// A trainable tensor owned by a module: a leaf that requires grad, charged to the
/// `.parameters` memory tag. Optimizers update `value` in place so the leaf (and any hook
/// registered on it) stays the same object across steps.
public final class Parameter {
    public var value: Tensor

    public init(_ value: Tensor) {
        precondition(value.dtype.isFloatingPoint, "Parameter: expected a floating-point tensor, got \(value.dtype)")
        let owned = value.isContiguous ? value.detached() : value.contiguous().detached()
        owned.storageBlock.retag(.parameters)
        self.value = owned.requiringGrad()
    }

    public var shape: [Int] { value.shape }
    /// The accumulated gradient, or nil.
    public var grad: Tensor? { value.grad }
}

/// A non-trainable tensor that is part of a module's state (e.g. BatchNorm running statistics).
public final class Buffer {
    public var value: Tensor
    public init(_ value: Tensor) {
        self.value = value.detached()
    }
}

/// Base class of layers and models.
///
/// Parameters, buffers and child modules are discovered from stored properties (by
/// reflection, in declaration order) and addressed by dotted names in PyTorch's style:
/// a property `runningMean` of child `features.1` is `features.1.running_mean` (camelCase
/// becomes snake_case, so state dicts move between Loom and PyTorch). Properties of type
/// `[Module]` name children by index, as `nn.ModuleList` does.
///
/// Subclasses override `forward(_:)`; `callAsFunction` calls it.
open class Module {
    /// Training mode (dropout active, batch statistics) or evaluation mode.
    public private(set) var isTraining = true

    public init() {}

    /// The layer's computation. Subclasses must override it.
    open func forward(_ input: Tensor) -> Tensor {
        preconditionFailure("\(type(of: self)).forward(_:) is not implemented")
    }

    /// Runs the module: its forward pre-hooks (which may replace the input), `forward(_:)`,
    /// then its forward hooks (which may replace the output); under a `ModuleTrace` the
    /// call is also recorded. Hooks run in registration order, also while a checkpointed
    /// segment is recomputed in backward (`GradMode.isRecomputing`), as in PyTorch.
    public func callAsFunction(_ input: Tensor) -> Tensor {
        guard let hooks = forwardHooks, !hooks.isEmpty else { return tracedForward(input) }
        var x = input
        for h in hooks.pre { x = h.body(self, x) ?? x }
        var y = tracedForward(x)
        for h in hooks.post { y = h.body(self, x, y) ?? y }
        return y
    }

    private func tracedForward(_ input: Tensor) -> Tensor {
        guard let trace = ModuleTrace.current, !GradMode.isRecomputing else { return forward(input) }
        trace.enter(self)
        let output: Tensor
        if let name = trace.names[ObjectIdentifier(self)] {
            output = Memory.$owner.withValue(name) { forward(input) }
        } else {
            output = forward(input)
        }
        trace.exit(self, input: input, output: output)
        return output
    }

    /// This module's forward hooks (nil until one is registered).
    private var forwardHooks: ForwardHooks?

    /// Registers `hook` to run before each call of this module (PyTorch's
    /// `register_forward_pre_hook`): it receives the module and the input and returns a
    /// replacement input, or nil to keep it. Returns a handle for `removeForwardHook`.
    @discardableResult
    public func registerForwardPreHook(_ hook: @escaping (Module, Tensor) -> Tensor?) -> ForwardHookHandle {
        let (hooks, handle) = newForwardHook()
        hooks.pre.append((handle, hook))
        return handle
    }

    /// Registers `hook` to run after each call of this module (PyTorch's
    /// `register_forward_hook`): it receives the module, the input and the output and
    /// returns a replacement output, or nil to keep it. Returns a handle for `removeForwardHook`.
    @discardableResult
    public func registerForwardHook(_ hook: @escaping (Module, Tensor, Tensor) -> Tensor?) -> ForwardHookHandle {
        let (hooks, handle) = newForwardHook()
        hooks.post.append((handle, hook))
        return handle
    }

    /// This module's hook table (created on first use) and a fresh handle.
    private func newForwardHook() -> (ForwardHooks, ForwardHookHandle) {
        let hooks = forwardHooks ?? ForwardHooks()
        forwardHooks = hooks
        defer { hooks.nextID += 1 }
        return (hooks, ForwardHookHandle(id: hooks.nextID))
    }

    /// Removes a forward (pre-)hook of this module; unknown handles are ignored.
    public func removeForwardHook(_ handle: ForwardHookHandle) {
        guard let hooks = forwardHooks else { return }
        hooks.pre.removeAll { $0.handle == handle }
        hooks.post.removeAll { $0.handle == handle }
        if hooks.isEmpty { forwardHooks = nil }
    }

    /// The number of forward pre-hooks and forward hooks registered on this module.
    public var forwardHookCount: Int { (forwardHooks?.pre.count ?? 0) + (forwardHooks?.post.count ?? 0) }

    /// Direct children with their names. The default reflects over stored properties.
    open func namedChildren() -> [(String, Module)] {
        var out: [(String, Module)] = []
        for (label, value) in reflectedProperties() {
            if let m = value as? Module {
                out.append((snakeCase(label), m))
            } else if let ms = value as? [Module] {
                for (i, m) in ms.enumerated() { out.append(("\(snakeCase(label)).\(i)", m)) }
            }
        }
        return out
    }

    /// This module's own parameters (not its children's), with names.
    open func ownParameters() -> [(String, Parameter)] {
        reflectedProperties().compactMap { label, value in (value as? Parameter).map { (snakeCase(label), $0) } }
    }

    /// This module's own buffers, with names.
    open func ownBuffers() -> [(String, Buffer)] {
        reflectedProperties().compactMap { label, value in (value as? Buffer).map { (snakeCase(label), $0) } }
    }

    func reflectedProperties() -> [(String, Any)] {
        var mirrors: [Mirror] = []
        var m: Mirror? = Mirror(reflecting: self)
        while let cur = m { mirrors.append(cur); m = cur.superclassMirror }
        var out: [(String, Any)] = []
        for mirror in mirrors.reversed() {
            for child in mirror.children {
                guard let label = child.label, label != "isTraining", label != "forwardHooks" else { continue }
                // Unwrap optionals (e.g. `bias: Parameter?`).
                let inner = Mirror(reflecting: child.value)
                if inner.displayStyle == .optional {
                    if let some = inner.children.first { out.append((label, some.value)) }
                } else {
                    out.append((label, child.value))
                }
            }
        }
        return out
    }

    /// All parameters, depth first, with dotted names.
    public func namedParameters() -> [(String, Parameter)] {
        var out = ownParameters()
        for (name, child) in namedChildren() {
            out += child.namedParameters().map { ("\(name).\($0.0)", $0.1) }
        }
        return out
    }

    /// All buffers, depth first, with dotted names.
    public func namedBuffers() -> [(String, Buffer)] {
        var out = ownBuffers()
        for (name, child) in namedChildren() {
            out += child.namedBuffers().map { ("\(name).\($0.0)", $0.1) }
        }
        return out
    }

    /// All modules (this one first), with dotted names ("" for this one).
    public func namedModules() -> [(String, Module)] {
        var out: [(String, Module)] = [("", self)]
        for (name, child) in namedChildren() {
            out += child.namedModules().map { ($0.0.isEmpty ? name : "\(name).\($0.0)", $0.1) }
        }
        return out
    }

    /// All parameters in `namedParameters()` order.
    public var parameters: [Parameter] { namedParameters().map(\.1) }

    /// Number of trainable scalars.
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.value.count } }

    /// Sets training (true) or evaluation (false) mode on this module and all descendants.
    public func train(_ on: Bool = true) {
        for (_, m) in namedModules() { m.isTraining = on }
    }

    /// Evaluation mode (dropout off, running statistics).
    public func eval() { train(false) }

    /// Clears every parameter's gradient.
    public func zeroGrad() {
        for p in parameters { p.value.zeroGrad() }
    }
}

/// Identifies a forward hook registered on a module.
public struct ForwardHookHandle: Hashable, Sendable {
    let id: Int
}

/// A module's forward pre-hooks and forward hooks.
final class ForwardHooks {
    var pre: [(handle: ForwardHookHandle, body: (Module, Tensor) -> Tensor?)] = []
    var post: [(handle: ForwardHookHandle, body: (Module, Tensor, Tensor) -> Tensor?)] = []
    var nextID = 0
    var isEmpty: Bool { pre.isEmpty && post.isEmpty }
}

/// `runningMean` -> `running_mean`; names that are already snake_case or digits pass through.
public func snakeCase(_ s: String) -> String {
    var out = ""
    for ch in s {
        if ch.isUppercase {
            if !out.isEmpty { out.append("_") }
            out.append(contentsOf: ch.lowercased())
        } else {
            out.append(ch)
        }
    }
    return out
}

import Foundation

/// Records module calls during a forward pass (for `loom summary`, memory reports).
///
/// Install with `ModuleTrace.$current.withValue(trace) { model(x) }`. `@unchecked Sendable`
/// by design: the call log is guarded by a lock; modules are only referenced, never
/// touched, from other threads.
public final class ModuleTrace: @unchecked Sendable {
    @TaskLocal public static var current: ModuleTrace?

    /// One completed call: the module, its input and output shapes, and the nesting depth.
    public struct Call {
        public let module: Module
        public let inputShape: [Int]
        public let outputShape: [Int]
        public let outputDType: DType
        public let depth: Int
        /// Bytes allocated (net) during the call, from the allocator's accounting.
        public let bytesAllocated: Int
    }

    private var log: [Call] = []
    private var entryMemory: [Int] = []
    private let lock = NSLock()
    /// Dotted names of the traced model's modules: while one runs its forward, allocations
    /// are attributed to it (`Memory.owner`), so memory timelines can be split per layer.
    public let names: [ObjectIdentifier: String]

    public init() { names = [:] }

    /// A trace that also attributes allocations to `model`'s modules by dotted name.
    public init(naming model: Module) {
        names = Dictionary(model.namedModules().map { (ObjectIdentifier($0.1), $0.0.isEmpty ? "(model)" : $0.0) },
                           uniquingKeysWith: { a, _ in a })
    }

    func enter(_ m: Module) {
        let now = Memory.stats().current
        lock.lock(); defer { lock.unlock() }
        entryMemory.append(now)
    }

    func exit(_ m: Module, input: Tensor, output: Tensor) {
        let now = Memory.stats().current
        lock.lock(); defer { lock.unlock() }
        let start = entryMemory.removeLast()
        log.append(Call(module: m, inputShape: input.shape, outputShape: output.shape, outputDType: output.dtype,
                        depth: entryMemory.count, bytesAllocated: now - start))
    }

    /// Completed calls in completion order (children before their parents).
    public var calls: [Call] { lock.lock(); defer { lock.unlock() }; return log }
}
