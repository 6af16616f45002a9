import Layers
import TensorCore

/// Which modules become the units of `FullyShardedDataParallel`: the granularity at
/// which full parameters are gathered (before a unit's forward and backward) and freed.
///
/// A unit can be any module of the model: FSDP gathers its parameters in a forward
/// pre-hook and frees them in a forward hook (`Module.registerForwardPreHook`), so units
/// work inside custom containers (a zoo model holding two Sequentials, a residual block).
/// Smaller units lower the peak (about one or two units' parameters are full at a time)
/// at the price of more, smaller collectives. A module called twice in one forward must
/// sit inside one unit (it is freed after its first call).
public enum FSDPUnitPolicy: Sendable, Equatable {
    /// The default: the modules that hold parameters themselves (Conv2d, Linear,
    /// BatchNorm, ...), found by descending from the model through every module that
    /// holds none of its own (Sequentials, a model's containers, residual blocks). A
    /// Sequential with a checkpoint plan is not descended into: it is one unit (its
    /// segments are recomputed in backward, inside the unit's gathered window). Layers
    /// without parameters (activations, pooling) belong to no unit and run as they are.
    case perLayer
    /// The model's direct children that have parameters (the whole model when it holds
    /// parameters of its own).
    case topLevel
    /// The whole model as one unit (ZeRO-3 memory between steps, full parameters during
    /// forward and backward).
    case wholeModel
    /// The modules with these dotted names (as in `namedModules()`; "" is the model).
    case modules([String])
}

/// The units of a fully sharded model as a plain value: each unit's module name and the
/// indices (into `parameterNames`, the order of `uniqueParameters`) of its parameters.
/// Built by `init(_:policy:)`, validated (every parameter in exactly one unit), with a
/// text form:
/// ```
/// fsdp units 2 params 4
/// unit 0 '0' params 0 1
/// unit 1 '4' params 2 3
/// ```
public struct FSDPUnitPlan: Equatable, Sendable, CustomStringConvertible {
    /// One unit: a module and its parameters.
    public struct Unit: Equatable, Sendable {
        /// Dotted module name ("" for the whole model).
        public var name: String
        /// Parameter indices, in the module's registration order.
        public var parameters: [Int]
    }

    /// The units in forward (registration) order.
    public let units: [Unit]
    /// Dotted names of all parameters (the model's unique parameters, registration order).
    public let parameterNames: [String]

    /// A validated plan from explicit units: every parameter index in `0..<parameterNames.count`
    /// appears in exactly one unit. Throws naming the parameter and the units otherwise.
    public init(units: [Unit], parameterNames: [String]) throws(DataParallelError) {
        var owner: [Int: String] = [:]
        for u in units {
            for i in u.parameters {
                guard i >= 0 && i < parameterNames.count else {
                    throw DataParallelError("FSDP unit plan: unit '\(u.name)' lists parameter \(i); expected 0..<\(parameterNames.count)")
                }
                if let other = owner[i] {
                    throw DataParallelError("FSDP unit plan: parameter '\(parameterNames[i])' is in units '\(other)' and '\(u.name)'; a parameter must belong to exactly one unit (shared weights must sit inside one unit)")
                }
                owner[i] = u.name
            }
        }
        let orphans = parameterNames.indices.filter { owner[$0] == nil }
        if !orphans.isEmpty {
            throw DataParallelError("FSDP unit plan: parameters " + orphans.map { "'\(parameterNames[$0])'" }.joined(separator: ", ")
                                    + " belong to no unit (units: \(units.map { "'\($0.name)'" }.joined(separator: ", ")))")
        }
        self.units = units
        self.parameterNames = parameterNames
    }

    /// The plan `policy` gives for `model`. Throws when a named module does not exist, is
    /// inside a Sequential with a checkpoint plan (its recomputation in backward would run
    /// outside the unit's gathered window), when units nest, or when a parameter falls in
    /// no unit or in two.
    public init(_ model: Module, policy: FSDPUnitPolicy = .perLayer) throws(DataParallelError) {
        let (names, params) = uniqueParameters(model)
        var index: [ObjectIdentifier: Int] = [:]
        for (i, p) in params.enumerated() { index[ObjectIdentifier(p)] = i }
        let modules = FSDPUnitPlan.unitModules(model, policy: policy)
        var chosen: [(String, Module)] = []
        switch modules {
        case .success(let list): chosen = list
        case .failure(let e): throw e
        }
        var units: [Unit] = []
        for (name, m) in chosen {
            var seen: Set<Int> = []
            var list: [Int] = []
            for (_, p) in m.namedParameters() {
                let i = index[ObjectIdentifier(p)]!
                if seen.insert(i).inserted { list.append(i) }
            }
            units.append(Unit(name: name, parameters: list))
        }
        try self.init(units: units, parameterNames: names)
    }

    /// Unit modules for a policy, in forward (registration) order, with their dotted names.
    static func unitModules(_ model: Module, policy: FSDPUnitPolicy) -> Result<[(String, Module)], DataParallelError> {
        func join(_ a: String, _ b: String) -> String { a.isEmpty ? b : "\(a).\(b)" }
        func hasParameters(_ m: Module) -> Bool { !m.namedParameters().isEmpty }
        func isCheckpointed(_ m: Module) -> Bool { (m as? Sequential)?.checkpointPlan != nil }
        func leaves(_ m: Module, _ name: String) -> [(String, Module)] {
            if m.ownParameters().isEmpty && !isCheckpointed(m) {
                return m.namedChildren().flatMap { leaves($0.1, join(name, $0.0)) }
            }
            return hasParameters(m) ? [(name, m)] : []
        }
        switch policy {
        case .wholeModel:
            return .success([("", model)])
        case .perLayer:
            return .success(leaves(model, ""))
        case .topLevel:
            guard model.ownParameters().isEmpty, !isCheckpointed(model) else { return .success([("", model)]) }
            return .success(model.namedChildren().filter { hasParameters($0.1) })
        case .modules(let wanted):
            let all = Dictionary(model.namedModules(), uniquingKeysWith: { a, _ in a })
            var out: [(String, Module)] = []
            for name in wanted {
                guard let m = all[name] else {
                    return .failure(DataParallelError("FSDP unit plan: no module named '\(name)' (modules: \(model.namedModules().map { "'\($0.0)'" }.prefix(12).joined(separator: ", "))...)"))
                }
                // No proper ancestor may be a Sequential with a checkpoint plan.
                var path = ""
                for part in name.split(separator: ".").map(String.init) {
                    if let s = all[path], isCheckpointed(s) {
                        return .failure(DataParallelError("FSDP unit plan: module '\(name)' is inside '\(path.isEmpty ? "(model)" : path)', a Sequential with a checkpoint plan; its recomputation in backward would run outside the unit's gathered window (make the checkpointed Sequential, or a module around it, the unit)"))
                    }
                    path = join(path, part)
                }
                out.append((name, m))
            }
            let order = Dictionary(model.namedModules().enumerated().map { ($0.element.0, $0.offset) }, uniquingKeysWith: { a, _ in a })
            out.sort { order[$0.0]! < order[$1.0]! }
            for (a, b) in zip(out, out.dropFirst()) where b.0.hasPrefix(a.0.isEmpty ? "" : a.0 + ".") || a.0.isEmpty {
                return .failure(DataParallelError("FSDP unit plan: unit '\(b.0)' is inside unit '\(a.0.isEmpty ? "(model)" : a.0)'; units must not nest"))
            }
            return .success(out)
        }
    }

    /// The text form: a header, then one line per unit.
    public var description: String {
        (["fsdp units \(units.count) params \(parameterNames.count)"]
            + units.enumerated().map { "unit \($0.offset) '\($0.element.name)' params \($0.element.parameters.map(String.init).joined(separator: " "))" })
            .joined(separator: "\n")
    }
}
