#include <stdio.h>

/* The lecture's foo.c: something for grep to find. */
long factorial(int n) {
  return n <= 1 ? 1 : n * factorial(n - 1);
}

int main(void) {
  printf("%ld\n", factorial(10));
  return 0;
}
