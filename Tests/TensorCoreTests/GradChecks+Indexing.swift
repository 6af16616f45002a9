import TensorCore

extension GradChecks {
    static var indexing: [String: [GradCheckCase]] {
        [:]
    }
}
