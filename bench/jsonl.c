/* JSON Lines parsing speed of the Debian JSON libraries sigma could use:
 * cJSON, jansson and libjq's jv, each parsing every line of a file and
 * taking its "text" field. Build and run with bench/jsonl.sh. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cjson/cJSON.h>
#include <jansson.h>
#include <jv.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  if(argc<3){fprintf(stderr,"usage: jsonl-bench 0|1|2 FILE\n");return 2;}
  FILE*f=fopen(argv[2],"r"); if(!f){perror(argv[2]);return 1;} char*line=NULL;size_t cap=0;ssize_t n; size_t total=0,tb=0; int which=atoi(argv[1]);
  double t0=now();
  while((n=getline(&line,&cap,f))>0){ total+=n;
    if(which==0){cJSON*j=cJSON_ParseWithLength(line,n);cJSON*t=cJSON_GetObjectItemCaseSensitive(j,"text");tb+=strlen(t->valuestring);cJSON_Delete(j);}
    else if(which==1){json_error_t e;json_t*j=json_loadb(line,n,JSON_ALLOW_NUL|JSON_DISABLE_EOF_CHECK,&e);tb+=json_string_length(json_object_get(j,"text"));json_decref(j);}
    else {jv j=jv_parse_sized(line,n);jv t=jv_object_get(j,jv_string("text"));tb+=jv_string_length_bytes(jv_copy(t));jv_free(t);}
  }
  double dt=now()-t0; printf("%s %.1f MB/s (%zu text bytes)\n",which==0?"cJSON":which==1?"jansson":"jq-jv",total/dt/1e6,tb); return 0;}
