// Cost of a copy-on-write fault in a short-lived child: fork, the child
// writes K pages of a 1 MB buffer, _exit, waitpid; 1,000 times.
//   cc -O2 scripts/cow-fault-cost.c -o /tmp/cow && for k in 0 48 96; do /tmp/cow $k; done
// docs/PERFORMANCE.md, "Where a short-lived child's time goes".
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  int k=atoi(argv[1]); int n=1000;
  char*buf=malloc(4096*256); memset(buf,1,4096*256);
  double t0=now();
  for(int i=0;i<n;i++){
    pid_t p=fork();
    if(p==0){ for(int j=0;j<k;j++) buf[j*4096]=2; _exit(0);}
    waitpid(p,0,0);
  }
  printf("k=%d: %.1f us per child\n",k,(now()-t0)/n*1e6);
}
