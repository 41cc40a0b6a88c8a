import sys

numbers = [int(tok) for tok in sys.stdin.read().split()]
print(sum(numbers))
