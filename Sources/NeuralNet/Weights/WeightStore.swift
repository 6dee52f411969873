/// Hands out tensors by name and remembers which were asked for, so loading
/// can refuse a file that holds tensors the graph never used (a sign of a
/// wrong architecture or a wrong converter).
struct WeightStore {
    let file: SafeTensors
    private(set) var used: Set<String> = []

    init(_ file: SafeTensors) { self.file = file }

    mutating func floats(_ name: String, shape: [Int]) throws(NeuralNetError) -> [Float] {
        used.insert(name)
        return try file.floats(name, shape: shape)
    }

    func checkAllUsed() throws(NeuralNetError) {
        let unused = file.entries.keys.filter { !used.contains($0) }.sorted()
        if !unused.isEmpty { throw .tensorsUnused(names: unused) }
    }
}
