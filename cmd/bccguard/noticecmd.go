package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/bccguard/bccguard/config"
	"github.com/bccguard/bccguard/notice"
	"github.com/bccguard/bccguard/policy"
)

func newNoticeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "notice",
		Short: "Work with the notices senders get after a conversion",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError{errors.New("a subcommand is required: notice preview")}
		},
	}
	var file, from string
	preview := &cobra.Command{
		Use:   "preview [MESSAGE.eml | -]",
		Short: "Print the notice that would be sent for one message",
		Long: "Decide on one message (a file, or standard input) as the daemon does and print\n" +
			"the notice its sender would get, exactly as it would be handed to Postfix, so that\n" +
			"the wording can be checked before notify_sender is switched on. The envelope\n" +
			"sender defaults to the From address. Notes (a rule without notify_sender, the\n" +
			"envelope) go to standard error. Exits with 1 when the message would not be\n" +
			"converted, so there is no notice to show.",
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := config.Load(file)
			if err != nil {
				return err
			}
			name, raw, err := readMessage(cmd, args)
			if err != nil {
				return fmt.Errorf("notice preview: %w", err)
			}
			header, err := policy.ReadHeader(bytes.NewReader(raw))
			if err != nil {
				return fmt.Errorf("notice preview: %s: %w", name, err)
			}
			if !cmd.Flags().Changed("from") {
				from = firstAddress(header, "From")
			}
			msg, notes, err := previewNotice(c, from, header)
			for _, n := range notes {
				fmt.Fprintln(cmd.ErrOrStderr(), "# "+n)
			}
			if err != nil {
				return err
			}
			_, err = io.WriteString(cmd.OutOrStdout(), strings.ReplaceAll(string(msg.Data), "\r\n", "\n"))
			return err
		},
	}
	preview.Flags().StringVarP(&file, "config", "c", "", "config file (YAML); default: built-in defaults")
	preview.Flags().StringVar(&from, "from", "", "envelope sender (default: the From address)")
	cmd.AddCommand(preview)
	return cmd
}

// readMessage reads the file named in args, or standard input.
func readMessage(cmd *cobra.Command, args []string) (string, []byte, error) {
	if len(args) == 0 || args[0] == "-" {
		b, err := io.ReadAll(cmd.InOrStdin())
		return "-", b, err
	}
	b, err := os.ReadFile(args[0])
	return args[0], b, err
}

// previewNotice runs the daemon's decision and composes the notice the
// daemon would queue, with notes for the admin.
func previewNotice(c *config.Config, from string, header []policy.Field) (notice.Message, []string, error) {
	var coll policy.Collector
	var orig notice.Original
	for _, f := range header {
		coll.Add(f.Name, f.Value)
		orig.Add(f.Name, f.Value)
	}
	d := policy.Decide(c.Policy, coll.Message(from))
	if d.Action != policy.Convert {
		return notice.Message{}, nil, fmt.Errorf("no notice: the message would not be converted (%s: %s)", d.Action, d.Reason)
	}
	var notes []string
	if !d.Settings.NotifySender {
		notes = append(notes, "rule "+d.Rule+" has notify_sender: false; this notice is not sent until it is true")
	}
	s := *c.Notice
	if s.From.Address == "" {
		s.From.Address = "postmaster@" + d.SenderDomain
		notes = append(notes, "notice.from is not set; shown with "+s.From.Address)
	}
	msg, err := notice.Compose(&s, notice.Event{QueueID: "PREVIEW", Sender: from, Original: orig, Decision: d, Delivery: "hide"}, time.Now())
	if err != nil {
		return msg, notes, err
	}
	notes = append(notes, "envelope: MAIL FROM:<> RCPT TO:<"+strings.Join(msg.Rcpts, "> <")+"> via reinject.address "+orEmptyNote(c.Reinject.Address))
	return msg, notes, nil
}

func orEmptyNote(s string) string {
	if s == "" {
		return "(not set)"
	}
	return s
}
