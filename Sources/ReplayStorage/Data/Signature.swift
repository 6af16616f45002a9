import TensorCore

/// The name, dtype and per-step shape of one column of a table's data.
public struct ColumnSpec: Codable, Sendable, Equatable, CustomStringConvertible {
    /// Column name (unique within a signature).
    public var name: String
    /// Element type.
    public var dtype: DType
    /// Shape of one step (the chunk adds a leading step dimension); -1 matches any extent.
    public var shape: [Int]

    /// A column spec.
    public init(name: String, dtype: DType, shape: [Int]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
    }

    /// Whether a step shape matches (same rank, equal extents except -1 wildcards).
    public func matches(stepShape: ArraySlice<Int>) -> Bool {
        guard stepShape.count == shape.count else { return false }
        for (e, f) in zip(shape, stepShape) where e != -1 && e != f { return false }
        return true
    }

    public var description: String { "\(name): \(dtype) \(shape)" }
}

extension Array where Element == ColumnSpec {
    /// Throws when a name is empty or repeated or an extent is below -1.
    func validateSignature(table: String) throws(ReplayError) {
        var seen = Set<String>()
        for c in self {
            guard !c.name.isEmpty else { throw ReplayError(.invalidArgument, "table '\(table)': signature has a column with an empty name") }
            guard seen.insert(c.name).inserted else {
                throw ReplayError(.invalidArgument, "table '\(table)': signature names column '\(c.name)' twice")
            }
            for d in c.shape where d < -1 {
                throw ReplayError(.invalidArgument, "table '\(table)': column '\(c.name)' has extent \(d) in shape \(c.shape), expected >= 0 or -1 (any)")
            }
        }
    }

    /// Throws a `signatureMismatch` naming the column, the expected and the found
    /// dtype/shape when `chunk` does not match this signature.
    func check(_ chunk: Chunk, table: String) throws(ReplayError) {
        guard chunk.columns.count == count else {
            throw ReplayError(.signatureMismatch,
                              "table '\(table)': chunk \(chunk.key) has \(chunk.columns.count) columns, expected \(count) (\(map(\.name).joined(separator: ", ")))")
        }
        for (spec, column) in zip(self, chunk.columns) {
            guard column.dtype == spec.dtype else {
                throw ReplayError(.signatureMismatch,
                                  "table '\(table)': column '\(spec.name)': expected dtype \(spec.dtype), found \(column.dtype) (chunk \(chunk.key))")
            }
            guard spec.matches(stepShape: column.shape.dropFirst()) else {
                throw ReplayError(.signatureMismatch,
                                  "table '\(table)': column '\(spec.name)': expected step shape \(spec.shape), found \([Int](column.shape.dropFirst())) (chunk \(chunk.key) of shape \(column.shape))")
            }
        }
    }
}
