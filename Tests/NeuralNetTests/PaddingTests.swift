import NeuralNet
import Testing

/// Keras/XLA 'same': the odd row of padding goes to the bottom/right.
@Test(arguments: [
    (256, 3, 1, 1, 1),  // 3x3 stride 1: symmetric
    (256, 3, 2, 0, 1),  // even input, stride 2: total 1, all after
    (255, 3, 2, 1, 1),
    (17, 7, 1, 3, 3),
    (8, 1, 1, 0, 0),
    (35, 5, 1, 2, 2),
    (2, 3, 2, 0, 1),
])
func samePadding(input: Int, kernel: Int, stride: Int, before: Int, after: Int) {
    let p = Padding.same(input: (input, input), kernel: (kernel, kernel), stride: (stride, stride))
    #expect(p == Padding(top: before, bottom: after, left: before, right: after), "\(input) k\(kernel) s\(stride)")
    #expect(p.outputSize(input: (input, input), kernel: (kernel, kernel), stride: (stride, stride)).0
            == (input + stride - 1) / stride)
}
