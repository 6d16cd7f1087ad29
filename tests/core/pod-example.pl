#!/usr/bin/perl
# tlbd: cut the program out of a man page's EXAMPLE section, so that a test
# can compile and run it as the page shows it.
#   pod-example.pl PAGE.pod OUT.c
# The verbatim paragraphs of the section (lines indented by one space) are
# written with that space removed; everything else is left out.
use strict;
use warnings;

my ($pod, $out) = @ARGV;
die "usage: pod-example.pl PAGE.pod OUT.c\n" unless defined $out;
open(my $in, '<', $pod) or die "pod-example.pl: $pod: $!\n";
my ($in_example, @code) = (0);
while (my $line = <$in>) {
    if ($line =~ /^=head1\s+(\S+)/) {
        $in_example = $1 eq 'EXAMPLE';
        next;
    }
    next unless $in_example;
    if ($line =~ /^ (.*\n)/) {
        push @code, $1;
    } elsif ($line =~ /^\s*$/ && @code) {
        push @code, "\n";
    }
}
close($in);
die "pod-example.pl: $pod: no verbatim code in EXAMPLE\n" unless @code;
open(my $fh, '>', $out) or die "pod-example.pl: $out: $!\n";
print $fh "/* Generated from " . ($pod =~ s{.*/}{}r) . " by pod-example.pl: do not edit. */\n", @code;
close($fh) or die "pod-example.pl: $out: $!\n";
